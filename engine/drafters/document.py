"""Per-document n-gram index (prompt lookup): draft what followed the last n tokens before."""

from __future__ import annotations

from typing import Sequence

from .base import DrafterBase, HistoryMirror


class _NgramTable:
    """For each n: n-gram -> the end positions (ascending) that have a next token."""

    def __init__(self, ns: tuple[int, ...]) -> None:
        self.ns = ns
        self.maps: dict[int, dict[tuple[int, ...], list[int]]] = {n: {} for n in ns}

    def add(self, tokens: list[int], start: int) -> None:
        """Index the n-grams that end just before each position >= start."""
        for n, m in self.maps.items():
            for e in range(max(start, n), len(tokens)):
                ends = m.setdefault(tuple(tokens[e - n:e]), [])
                while ends and ends[-1] >= e:    # left by a rolled-back history
                    ends.pop()
                ends.append(e)

    def candidates(self, tokens: list[int], tail: list[int], n: int) -> list[int]:
        """The RECENT latest places where the n-gram ending tail was followed by
        something in tokens, latest first."""
        key = tuple(tail[-n:])
        found = []
        for e in reversed(self.maps[n].get(key, ())):
            # Entries may point into a history that was since rolled back: check.
            if e < len(tokens) and tuple(tokens[e - n:e]) == key:
                found.append(e)
                if len(found) == RECENT:
                    break
        return found


# Candidates compared per n-gram, and how far back their contexts are compared.
RECENT, CONTEXT = 8, 64


def context_length(seq: list[int], e: int, tail: list[int], limit: int) -> int:
    """How many tokens before seq[e] equal the end of tail (at most limit)."""
    k, n_tail = 0, len(tail)
    while k < limit and k < e and k < n_tail and seq[e - 1 - k] == tail[n_tail - 1 - k]:
        k += 1
    return k


class DocumentIndex(DrafterBase):
    """Longest recent match of the history's tail in (source document, history).

    Tries n = ns[0] down to ns[-1]; at the first n that matches, the place
    whose context agrees with the history's tail furthest back wins (among
    the RECENT latest of each), then the history's own latest occurrence,
    because recent text predicts best. The longer context tells apart the
    two lines of a repeated block that start alike ("vline(uly+1, ulx" and
    "vline(uly, ulx+1"), where the latest occurrence is the wrong one.

    skip_prompt: the history before the first draft() call (the prompt) is
    not a place to copy from. A rewrite's prompt holds the source (indexed
    anyway) between a chat template and the instruction, which the answer
    never continues into: once the answer wrote the new name, the
    instruction's "to X_impl." drafted ".\nAnswer with the complete ...",
    and at the end of the file its copy in the prompt drafted the
    instruction after the closing fence. Instead, an answer that has not
    started yet is drafted as the source's opening.
    """

    name = "doc"

    def __init__(self, source_tokens: Sequence[int] | None = None,
                 ns: tuple[int, ...] = (8, 5, 3, 2), skip_prompt: bool = False) -> None:
        super().__init__()
        self._skip_prompt = skip_prompt
        self._first: int | None = None     # the first history position whose continuation is indexed
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
        if self._first is None:
            self._first = len(history) if self._skip_prompt else 0
        self._history.add(tokens, max(self._mirror.sync(history), self._first))
        self.from_source = True
        if self._skip_prompt and len(tokens) == self._first:
            return self._source[:max_len]
        for n in self.ns:
            if len(tokens) < n:
                continue
            best, best_k = None, -1
            for seq, table in ((tokens, self._history), (self._source, self._source_index)):
                for e in table.candidates(seq, tokens, n):
                    k = context_length(seq, e, tokens, CONTEXT)
                    if k > best_k:
                        best, best_k = (seq, e), k
            if best is not None:
                seq, e = best
                self.from_source = seq is self._source
                return seq[e:e + max_len]
        self.from_source = False
        return []
