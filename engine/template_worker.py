"""The parent's side of the template renderer process (template_sandbox.py).

One child process per ditto process, started on the first render and shared
by every chat template (a lock keeps one request in flight). A render that
takes longer than the time limit gets its process killed; the next render
starts a new one. The child is started with `python -I`, so nothing in the
working directory or the environment (a workspace file named jinja2.py,
PYTHONPATH) is imported into it.
"""
from __future__ import annotations

import os
import select
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from . import template_sandbox

RENDER_TIME_LIMIT_S = 10.0
_STOPPED = "could not be rendered: the renderer process stopped (out of memory, or a crash)"
_SCRIPT = Path(template_sandbox.__file__)


class RenderError(ValueError):
    """The render failed; the message says how, without naming the template."""


class TemplateWorker:
    """Renders templates in the child process, within a time limit."""

    def __init__(self, time_limit_s: float = RENDER_TIME_LIMIT_S) -> None:
        self.time_limit_s = time_limit_s
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._owner = os.getpid()  # a forked copy of this object must not share the pipes

    def render(self, source: str, contexts: list[dict[str, Any]]) -> list[str]:
        """The template's output for each context (variables as JSON values)."""
        try:
            frame = template_sandbox.encode_frame({"source": source, "contexts": contexts})
        except (TypeError, ValueError) as e:
            raise RenderError(f"could not be rendered: its variables must be JSON values ({e})") from None
        with self._lock:
            proc = self._process()
            try:
                template_sandbox.write_frame(proc.stdin, frame)
                reply = self._read_reply(proc)
            except BaseException as e:
                self._stop()  # no half-answered request may stay in the pipe
                if isinstance(e, OSError):  # a broken pipe: the process had died
                    raise RenderError(_STOPPED) from e
                raise
        if "error" in reply:
            raise RenderError(reply["error"])
        return reply["ok"]

    def close(self) -> None:
        with self._lock:
            self._stop()

    def _process(self) -> subprocess.Popen:
        if self._owner != os.getpid():
            self._proc, self._owner = None, os.getpid()
        if self._proc is not None and self._proc.poll() is not None:
            self._stop()  # it died between requests
        if self._proc is None:
            try:
                self._proc = subprocess.Popen(
                    [sys.executable, "-I", os.fspath(_SCRIPT)], stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            except OSError as e:
                raise RenderError(f"could not be rendered: cannot start the renderer process ({e})") from e
        return self._proc

    def _read_reply(self, proc: subprocess.Popen) -> dict[str, Any]:
        fd = proc.stdout.fileno()
        deadline = time.monotonic() + self.time_limit_s
        head = _read_exact(fd, template_sandbox.FRAME.size, deadline, self.time_limit_s)
        (n,) = template_sandbox.FRAME.unpack(head)
        return template_sandbox.decode_frame(_read_exact(fd, n, deadline, self.time_limit_s))

    def _stop(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            for stream in (self._proc.stdin, self._proc.stdout):
                stream.close()
            self._proc = None


def _read_exact(fd: int, n: int, deadline: float, limit_s: float) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise RenderError(f"took longer than the limit of {limit_s:g} s to render")
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            raise RenderError(_STOPPED)
        buf += chunk
    return bytes(buf)


_SHARED = TemplateWorker()


def shared_worker() -> TemplateWorker:
    return _SHARED
