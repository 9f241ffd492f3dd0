"""One thread owns the model; handlers submit jobs and await asyncio futures.

Jobs run one at a time in priority order (lower number first; FIFO within a
priority). A job gets a `JobContext`: `should_stop()` is true once its
cancellation token is set or its deadline has passed, and the decode loops
check it between forward passes, so a cancelled or superseded request stops
within one pass. A long background job (a rewrite) calls `yield_point()`
between forward passes: jobs of a more urgent priority that are waiting run
right there, on the same thread, then the background job goes on. A job
that must not run inside another (a model reload) waits for the background
job to end, and the urgent jobs queued behind it do not wait with it.
"""
from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

URGENT = 0       # a keystroke's completion, status
PREFETCH = 5     # speculative next suggestion
BACKGROUND = 10  # rewrites


class Cancelled(Exception):
    """The job was cancelled before or while it ran."""


class CancelToken:
    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""

    def cancel(self, reason: str = "cancelled") -> None:
        if not self._event.is_set():
            self.reason = reason
            self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


@dataclass(order=True)
class _Job:
    priority: int
    order: int
    fn: Callable[["JobContext"], Any] = field(compare=False)
    future: asyncio.Future = field(compare=False)
    loop: asyncio.AbstractEventLoop = field(compare=False)
    token: CancelToken = field(compare=False)
    deadline: float | None = field(compare=False, default=None)
    name: str = field(compare=False, default="")
    nestable: bool = field(compare=False, default=True)   # may run inside another job's yield_point


class JobContext:
    """What a running job sees of the scheduler."""

    def __init__(self, scheduler: "Scheduler", job: _Job) -> None:
        self._scheduler = scheduler
        self._job = job
        self.token = job.token
        self.priority = job.priority
        self.state = scheduler.state

    @property
    def deadline(self) -> float | None:
        return self._job.deadline

    def should_stop(self) -> bool:
        if self.token.cancelled:
            return True
        d = self._job.deadline
        if d is not None and time.monotonic() >= d:
            return True
        # Speculative work gives way as soon as real work waits.
        return self.priority >= PREFETCH and self.priority < BACKGROUND and self._scheduler.waiting(self.priority)

    def timed_out(self) -> bool:
        d = self._job.deadline
        return d is not None and time.monotonic() >= d

    def yield_point(self) -> None:
        """Runs waiting jobs that are more urgent than this one."""
        self._scheduler.run_waiting(self.priority)


class Scheduler:
    """Runs jobs on one worker thread. `state` is whatever the jobs share (the engine)."""

    def __init__(self, name: str = "ditto-model") -> None:
        self._heap: list[_Job] = []
        self._cv = threading.Condition()
        self._order = itertools.count()
        self._stopping = False
        self.state: Any = None
        self.busy_since: float | None = None
        self.jobs_run = 0
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    # ---- submission (event loop side) --------------------------------------------
    def submit(self, fn: Callable[[JobContext], Any], *, priority: int = URGENT,
               token: CancelToken | None = None, deadline: float | None = None,
               name: str = "", nestable: bool = True) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        job = _Job(priority, next(self._order), fn, fut, loop, token or CancelToken(), deadline, name,
                   nestable)
        with self._cv:
            if self._stopping:
                fut.set_exception(Cancelled("the server is shutting down"))
                return fut
            heapq.heappush(self._heap, job)
            self._cv.notify()
        return fut

    def waiting(self, than_priority: int) -> bool:
        """Is a job more urgent than `than_priority` queued (and not cancelled)?"""
        with self._cv:
            return any(j.priority < than_priority and not j.token.cancelled for j in self._heap)

    def stop(self) -> None:
        with self._cv:
            self._stopping = True
            for job in self._heap:
                job.token.cancel("shutdown")
            self._cv.notify()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    # ---- worker side ------------------------------------------------------------------------
    def _pop_nestable(self, than_priority: int) -> _Job | None:
        """The first job, in queue order, that is more urgent than `than_priority`
        and may run inside another job. Jobs that may not (a model reload)
        stay queued without holding back the ones behind them."""
        with self._cv:
            eligible = [i for i, j in enumerate(self._heap) if j.priority < than_priority and j.nestable]
            if not eligible:
                return None
            best = min(eligible, key=lambda i: self._heap[i])
            job = self._heap[best]
            self._heap[best] = self._heap[-1]
            self._heap.pop()
            heapq.heapify(self._heap)
            return job

    def run_waiting(self, than_priority: int) -> None:
        while (job := self._pop_nestable(than_priority)) is not None:
            self._run(job)

    def _main(self) -> None:
        while True:
            with self._cv:
                while not self._heap and not self._stopping:
                    self._cv.wait()
                if self._stopping and not self._heap:
                    return
                job = heapq.heappop(self._heap)
            self._run(job)

    @staticmethod
    def _deliver(job: _Job, result: Any = None, error: BaseException | None = None) -> None:
        def settle() -> None:
            if job.future.done():
                return
            if error is not None:
                job.future.set_exception(error)
            else:
                job.future.set_result(result)
        try:
            job.loop.call_soon_threadsafe(settle)
        except RuntimeError:  # the loop is closed: nobody waits any more
            pass

    def _run(self, job: _Job) -> None:
        if job.token.cancelled or job.future.cancelled():
            self._deliver(job, error=Cancelled(job.token.reason or "cancelled"))
            return
        self.busy_since = time.monotonic()
        try:
            result = job.fn(JobContext(self, job))
        except BaseException as e:  # delivered to the awaiting handler
            if not isinstance(e, (Cancelled, ValueError, OverflowError, LookupError)):
                log.exception("job %s failed", job.name)
            self._deliver(job, error=e)
        else:
            self._deliver(job, result)
        finally:
            self.busy_since = None
            self.jobs_run += 1
