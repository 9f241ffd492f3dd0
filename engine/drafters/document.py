"""Per-document n-gram index (prompt lookup): draft what followed the last n tokens before."""

from __future__ import annotations

from typing import Sequence

from .base import DrafterBase, HistoryMirror


class _NgramTable:
    """For each n: n-gram -> the latest end position that has a next token."""

    def __init__(self, ns: tuple[int, ...]) -> None:
        self.ns = ns
        self.maps: dict[int, dict[tuple[int, ...], int]] = {n: {} for n in ns}

    def add(self, tokens: list[int], start: int) -> None:
        """Index the n-grams that end just before each position >= start."""
        for n, m in self.maps.items():
            for e in range(max(start, n), len(tokens)):
                m[tuple(tokens[e - n:e])] = e

    def find(self, tokens: list[int], tail: list[int], n: int) -> int | None:
        """Where the n-gram ending tail was last followed by something in tokens."""
        key = tuple(tail[-n:])
        e = self.maps[n].get(key)
        # Entries may point into a history that was since rolled back: check.
        if e is None or e >= len(tokens) or tuple(tokens[e - n:e]) != key:
            return None
        return e


class DocumentIndex(DrafterBase):
    """Longest recent match of the history's tail in (source document, history).

    Tries n = ns[0] down to ns[-1]; at each n the history's own latest
    occurrence wins over the source, because recent text predicts best.
    """

    name = "doc"

    def __init__(self, source_tokens: Sequence[int] | None = None,
                 ns: tuple[int, ...] = (8, 5, 3, 2)) -> None:
        super().__init__()
        self.ns = tuple(sorted(ns, reverse=True))
        self._mirror = HistoryMirror()
        self._history = _NgramTable(self.ns)
        self._source: list[int] = []
        self._source_index = _NgramTable(self.ns)
        if source_tokens is not None:
            self.set_source(source_tokens)

    def set_source(self, tokens: Sequence[int]) -> None:
        """Index a document (e.g. the text below the cursor); replaces the last one."""
        self._source = [int(t) for t in tokens]
        self._source_index = _NgramTable(self.ns)
        self._source_index.add(self._source, 0)

    def _propose(self, history: Sequence[int], max_len: int) -> list[int]:
        tokens = self._mirror.tokens
        self._history.add(tokens, self._mirror.sync(history))
        for n in self.ns:
            if len(tokens) < n:
                continue
            for seq, table in ((tokens, self._history), (self._source, self._source_index)):
                e = table.find(seq, tokens, n)
                if e is not None:
                    return seq[e:e + max_len]
        return []
