"""llama.cpp's ngram-mod: hash of the last n tokens -> next token, in a fixed table.

The pool is constant memory and shared by every sequence (documents teach
each other); each sequence gets its own NgramModDrafter that remembers how
far it has fed its history into the pool.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .base import DrafterBase, HistoryMirror

_MASK = (1 << 64) - 1
_BASE = 6364136223846793005   # llama.cpp's LCG multiplier for the n-gram hash
_MIX = 0x9E3779B97F4A7C15     # Fibonacci hashing: take the well-mixed high bits
_BULK = 64                    # below this many new tokens a Python loop beats numpy


class NgramModPool:
    """Table of 2**bits int32 entries: slot(hash of n tokens) -> token that followed."""

    EMPTY = -1

    def __init__(self, n: int = 8, bits: int = 20) -> None:
        if n < 1 or not 4 <= bits <= 30:
            raise ValueError(f"need n >= 1 and 4 <= bits <= 30, got n={n} bits={bits}")
        self.n = n
        self.bits = bits
        self.table = np.full(1 << bits, self.EMPTY, dtype=np.int32)
        self._top = 1 << (64 - bits)
        self._base_pow = pow(_BASE, n - 1, 1 << 64)  # weight of the token leaving the window

    @property
    def nbytes(self) -> int:
        return self.table.nbytes

    def clear(self) -> None:
        self.table.fill(self.EMPTY)

    def hash(self, window: Sequence[int]) -> int:
        """Polynomial hash of exactly n tokens, mod 2**64."""
        h = 0
        for t in window:
            h = (h * _BASE + t) & _MASK
        return h

    def roll(self, h: int, leaving: int, entering: int) -> int:
        return ((h - leaving * self._base_pow) * _BASE + entering) & _MASK

    def slot(self, h: int) -> int:
        return ((h * _MIX) & _MASK) // self._top

    def get(self, h: int) -> int:
        return int(self.table[self.slot(h)])

    def add(self, tokens: Sequence[int], start: int) -> None:
        """Record every n-gram of tokens whose next token is at position >= start."""
        n = self.n
        first = max(start, n)
        if len(tokens) - first >= _BULK:
            self._add_bulk(tokens, first)
            return
        if first >= len(tokens):
            return
        h = self.hash(tokens[first - n:first])
        table, slot = self.table, self.slot
        for i in range(first, len(tokens)):
            table[slot(h)] = tokens[i]
            h = self.roll(h, tokens[i - n], tokens[i])

    def _add_bulk(self, tokens: Sequence[int], first: int) -> None:
        n = self.n
        arr = np.asarray(tokens[first - n:], dtype=np.int64).astype(np.uint64)
        m = len(arr) - n                      # windows that have a next token
        h = np.zeros(m, dtype=np.uint64)
        for j in range(n):                    # uint64 arrays wrap mod 2**64, like the scalar path
            h = h * np.uint64(_BASE) + arr[j:j + m]
        slots = (h * np.uint64(_MIX)) >> np.uint64(64 - self.bits)
        nxt = arr[n:].astype(np.int32)
        # numpy leaves the winner of repeated fancy-index writes unspecified:
        # keep the last occurrence explicitly, as the scalar path would.
        rev = slots[::-1]
        uniq, idx = np.unique(rev, return_index=True)
        self.table[uniq.astype(np.int64)] = nxt[::-1][idx]


class NgramModDrafter(DrafterBase):
    """Feeds one sequence's history into a (shared) pool and drafts from it."""

    name = "ngram-mod"

    def __init__(self, pool: NgramModPool | None = None, skip_prompt: bool = False) -> None:
        super().__init__()
        self.pool = pool if pool is not None else NgramModPool()
        self._mirror = HistoryMirror()
        self._skip_prompt = skip_prompt      # as DocumentIndex's: the prompt is not fed to the pool
        self._first: int | None = None

    def _propose(self, history: Sequence[int], max_len: int) -> list[int]:
        pool = self.pool
        tokens = self._mirror.tokens
        if self._first is None:
            self._first = len(history) if self._skip_prompt else 0
        pool.add(tokens, max(self._mirror.sync(history), self._first))
        n = pool.n
        if len(tokens) < n:
            return []
        window = tokens[-n:]
        h = pool.hash(window)
        out: list[int] = []
        while len(out) < max_len:
            t = pool.get(h)
            if t == pool.EMPTY:
                break
            out.append(t)
            window.append(t)
            h = pool.roll(h, window[-n - 1], t)
        return out
