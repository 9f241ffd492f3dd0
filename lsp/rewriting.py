"""What both rewrite commands share: the rewrite on the model thread, and a
feature base that stops the running rewrites when the session ends."""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..engine.rewrite import RewriteJob, language_for, make_request
from .completer import REWRITE_CHUNK
from .feature import LanguageFeature
from .scheduler import CancelToken
from .settings import NO_DRAFTER

if TYPE_CHECKING:
    from .server import DittoServer


class RewriteFeature(LanguageFeature):
    """A command that runs rewrites: it keeps their cancel tokens."""

    def __init__(self, server: DittoServer) -> None:
        super().__init__(server)
        self.running: set[CancelToken] = set()

    def stop(self, reason: str) -> None:
        for token in self.running:
            token.cancel(reason)


def rewrite_on_engine(engine, job, key, source: str, instruction: str, name: str, settings,
                      on_text) -> RewriteJob:
    """On the model thread: one rewrite in a pinned slot, yielding to waiting
    completions between forward passes. RewriteError or UnsafeText when the
    text cannot be rewritten safely (the message says why); the finished
    job's outcome() tells the rest."""
    slot = engine.slots.acquire(key, pin=True)
    try:
        rjob = RewriteJob(source=source, instruction=instruction, language=language_for(name), path=name)
        drafter = settings.rewrite_drafter
        req = make_request(engine.llm, rjob, seq=slot, speculate=drafter != NO_DRAFTER,
                           drafter_name=drafter if drafter != NO_DRAFTER else "auto",
                           max_tokens=settings.rewrite_max_tokens, on_text=on_text)
        engine.stats.rewrites += 1
        engine.llm.decoder.run([req], job.should_stop, prefill_chunk=REWRITE_CHUNK, between=job.yield_point)
        engine.stats.add_drafter(f"rewrite:{drafter}", req.stats.drafted, req.stats.accepted)
        return rjob
    finally:
        engine.slots.unpin(slot)
        engine.slots.forget(key)
