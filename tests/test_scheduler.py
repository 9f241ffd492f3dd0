"""The model thread's queue: a keystroke's completion never waits behind a
queued model reload or a running rewrite (it runs at the rewrite's next
yield point). Scripted jobs that block on events stand in for the model."""
from __future__ import annotations

import asyncio
import itertools
import threading

import pytest

from ditto.lsp.scheduler import BACKGROUND, PREFETCH, URGENT, Scheduler

TIMEOUT = 60


@pytest.fixture
def scheduler():
    s = Scheduler(name="test-scheduler")
    yield s
    s.stop()
    s.join(TIMEOUT)


async def wait(event: threading.Event) -> None:
    assert await asyncio.to_thread(event.wait, TIMEOUT), "timed out waiting for the scheduler"


def blocked_rewrite(order: list[str]):
    """A background job that stops before its first yield point until released."""
    started, release = threading.Event(), threading.Event()

    def rewrite(job):
        started.set()
        assert release.wait(TIMEOUT)
        order.append("rewrite pass")
        job.yield_point()
        order.append("rewrite end")
    return rewrite, started, release


def recorder(order: list[str], name: str):
    return lambda job: order.append(name)


async def test_completion_not_blocked_by_queued_reload_during_rewrite(scheduler):
    order: list[str] = []
    rewrite, started, release = blocked_rewrite(order)
    jobs = [scheduler.submit(rewrite, priority=BACKGROUND, name="rewrite")]
    await wait(started)
    jobs.append(scheduler.submit(recorder(order, "reload"), priority=URGENT, nestable=False, name="load"))
    jobs.append(scheduler.submit(recorder(order, "completion"), priority=URGENT, name="completion"))
    release.set()
    await asyncio.wait_for(asyncio.gather(*jobs), TIMEOUT)
    assert order == ["rewrite pass", "completion", "rewrite end", "reload"]


KINDS = {"urgent": (URGENT, True), "urgent-reload": (URGENT, False), "prefetch": (PREFETCH, True),
         "prefetch-reload": (PREFETCH, False), "background": (BACKGROUND, True)}


@pytest.mark.parametrize("queue", list(itertools.product(KINDS, repeat=3)), ids="/".join)
async def test_yield_point_runs_every_nestable_urgent_job_in_queue_order(scheduler, queue):
    """Whatever is queued ahead of them, the nestable jobs more urgent than the
    rewrite run at its yield point, by priority then submission order; the
    others wait for the rewrite to end."""
    order: list[str] = []
    rewrite, started, release = blocked_rewrite(order)
    jobs = [scheduler.submit(rewrite, priority=BACKGROUND, name="rewrite")]
    await wait(started)
    names = [f"{i}:{kind}" for i, kind in enumerate(queue)]
    for name, kind in zip(names, queue):
        priority, nestable = KINDS[kind]
        jobs.append(scheduler.submit(recorder(order, name), priority=priority, nestable=nestable, name=name))
    release.set()
    await asyncio.wait_for(asyncio.gather(*jobs), TIMEOUT)

    def queue_order(subset):
        return sorted(subset, key=lambda n: (KINDS[n.split(":")[1]][0], names.index(n)))
    nested = [n for n in names if KINDS[n.split(":")[1]][0] < BACKGROUND and KINDS[n.split(":")[1]][1]]
    after = [n for n in names if n not in nested]
    assert order == ["rewrite pass", *queue_order(nested), "rewrite end", *queue_order(after)]
