"""Prefill on didOpen: a document's first prompt window is evaluated in the
background, so the first completion there is served from the cache.

The job runs at PREFETCH priority: a completion never waits behind it (it
gives way between forward passes as soon as more urgent work waits, and is
submitted again afterwards, going on from what is cached). Its cancel token
sits in `ls.prefetching` with the document's other speculative work, so a
change to the document, closing it, or a completion cancels it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .scheduler import PREFETCH, CancelToken

if TYPE_CHECKING:
    from .server import DittoServer


def start(ls: DittoServer, uri: str) -> None:
    """Prefills the open document `uri` as the editor sent it."""
    doc = ls.open_document(uri)
    if doc is None or ls.sync_problem(uri) is not None:
        return
    previous = ls.prefetching.get(uri)
    if previous is not None:
        previous.cancel("the document was opened again")
    token = ls.prefetching[uri] = CancelToken()
    _submit(ls, uri, doc.source, token)


def _submit(ls: DittoServer, uri: str, text: str, token: CancelToken) -> None:
    def run(engine, job):
        return engine.prefill_document(job, uri, text)

    def done(f) -> None:
        finished = not f.cancelled() and f.exception() is None and not token.cancelled
        if finished and f.result() is None:     # gave way to more urgent work: go on after it
            _submit(ls, uri, text, token)
            return
        if ls.prefetching.get(uri) is token:
            del ls.prefetching[uri]
        if finished:    # otherwise cancelled, or no model: only the head start is lost
            ls.log(f"ditto: prefilled {f.result()} prompt tokens of {uri}")

    fut = ls.scheduler.submit(ls._with_engine(run), priority=PREFETCH, token=token, name="open prefill")
    fut.add_done_callback(done)
