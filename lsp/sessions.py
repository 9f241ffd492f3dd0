"""Per-document sessions mapped to the sequence slots of the native context.

A session is what the server remembers about one document: which sequence
slot holds its KV cache (or the bytes it was saved to), the prompt window's
start, its n-gram drafter, and the last suggestion (the completion cache).

The context has `n_seq` slots. A session that needs a slot when all are
taken evicts the least recently used unpinned one: that slot's state is
saved with `ctx.save` into RAM together with the tokens it holds, and loaded
back with `ctx.load` when its document is used again; the decoder adopts
exactly the tokens the loaded state holds, so prompt-prefix reuse stays
correct. Saved states over the RAM budget are dropped, oldest first
(the document is then evaluated again from scratch when it comes back).
"""
from __future__ import annotations

import itertools
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Hashable

from ..engine.drafters import DocumentIndex


@dataclass
class Suggestion:
    """The last suggestion shown for a document (the completion cache)."""
    prefix: str          # document text from the window start up to the cursor
    text: str            # the suggestion that followed it
    multiline: bool


@dataclass
class Session:
    uri: str
    window_start: int = 0                # character offset of the prompt's first line
    window_line: int = 0
    drafter: DocumentIndex = field(default_factory=DocumentIndex)
    last: Suggestion | None = None
    prefetched: Suggestion | None = None
    completions: int = 0
    cache_hits: int = 0
    cancelled: int = 0
    reused_tokens: int = 0
    evaluated_tokens: int = 0
    prefilled_tokens: int = 0            # the last prefill ahead of a completion (didOpen, ditto/didFocus)
    short_start: int | None = None       # where the short window of the last completion starts (completer.py)
    short_windows: int = 0               # completions answered from a short window
    window: Any = None                   # the window of the last model completion (completer.Window)
    chunk_snapshot: tuple[str, ...] | None = None


class SlotManager:
    """Maps keys (a document's uri, or a rewrite's) to sequence slots, LRU."""

    def __init__(self, llm, saved_budget_bytes: int) -> None:
        self.llm = llm
        self.n = llm.ctx.n_seq
        self.owner: list[Hashable | None] = [None] * self.n
        self.last_used = [0] * self.n
        self.pinned: set[int] = set()
        self.saved: OrderedDict[Hashable, tuple[list[int], bytes]] = OrderedDict()
        self.budget = saved_budget_bytes
        self._clock = itertools.count(1)
        self.saves = self.loads = self.dropped = 0

    @property
    def saved_bytes(self) -> int:
        return sum(len(b) for _t, b in self.saved.values())

    def slot_of(self, key: Hashable) -> int | None:
        try:
            return self.owner.index(key)
        except ValueError:
            return None

    def acquire(self, key: Hashable, *, pin: bool = False) -> int:
        """A slot whose cache belongs to `key` (restored if it was saved)."""
        slot = self.slot_of(key)
        if slot is None:
            slot = self._free_slot()
            self._evict(slot)
            saved = self.saved.pop(key, None)
            if saved is not None:
                tokens, data = saved
                self.llm.ctx.load(slot, data)
                self.llm.decoder.adopt(slot, tokens)
                self.loads += 1
            # Otherwise the slot keeps what it holds: KV entries depend only on
            # the tokens, so prefix reuse against them is still correct.
            self.owner[slot] = key
        self.last_used[slot] = next(self._clock)
        if pin:
            self.pinned.add(slot)
        return slot

    def unpin(self, slot: int) -> None:
        self.pinned.discard(slot)

    def _free_slot(self) -> int:
        for s in range(self.n):
            if self.owner[s] is None and s not in self.pinned:
                return s
        candidates = [s for s in range(self.n) if s not in self.pinned]
        if not candidates:
            raise RuntimeError("every sequence slot is busy; try again when a rewrite ends")
        return min(candidates, key=lambda s: self.last_used[s])

    def _evict(self, slot: int) -> None:
        key = self.owner[slot]
        if key is None:
            return
        self.owner[slot] = None
        ctx = self.llm.ctx
        n = ctx.seq_len(slot)
        if n == 0 or self.budget <= 0:
            return
        tokens = self.llm.decoder.cached_tokens(slot)
        if len(tokens) != n:  # should not happen; never save what we cannot describe
            return
        self.saved[key] = (list(tokens), ctx.save(slot))
        self.saved.move_to_end(key)
        self.saves += 1
        while self.saved and self.saved_bytes > self.budget:
            self.saved.popitem(last=False)
            self.dropped += 1

    def forget(self, key: Hashable) -> None:
        """The document closed: drop its saved state; its slot becomes free."""
        self.saved.pop(key, None)
        slot = self.slot_of(key)
        if slot is not None and slot not in self.pinned:
            self.owner[slot] = None
            self.last_used[slot] = 0

    def describe(self) -> dict[str, Any]:
        ctx = self.llm.ctx
        return {
            "slots": [{"slot": s, "owner": str(self.owner[s]) if self.owner[s] is not None else None,
                       "tokens": ctx.seq_len(s), "pinned": s in self.pinned} for s in range(self.n)],
            "saved": [{"owner": str(k), "tokens": len(t), "bytes": len(b)} for k, (t, b) in self.saved.items()],
            "saved_bytes": self.saved_bytes, "saves": self.saves, "loads": self.loads,
            "dropped": self.dropped,
        }
