"""A drafter wrapper that records every verified draft, for acceptance analysis."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from .base import Drafter, DrafterStats


@dataclass
class DraftRecord:
    """One verified draft: where it was made, whose it was, what the model kept."""

    position: int          # history length when drafted (the draft's first token goes here)
    drafter: str           # the drafter whose draft was used (inside a combined drafter)
    tokens: list[int]      # the tokens verified
    accepted: int          # how many of them the model accepted

    @property
    def rejected(self) -> bool:
        return self.accepted < len(self.tokens)


class TracingDrafter:
    """Passes draft / feedback through to `inner` and keeps a DraftRecord per
    verified draft. The drafts themselves are untouched, so decoding is too."""

    def __init__(self, inner: Drafter) -> None:
        self.inner = inner
        self.name = inner.name
        self.records: list[DraftRecord] = []
        self._last: tuple[int, str, list[int]] | None = None

    @property
    def stats(self) -> DrafterStats:
        return self.inner.stats

    @property
    def from_source(self) -> bool:
        return self.inner.from_source

    def draft(self, history: Sequence[int], max_len: int) -> list[int]:
        out = self.inner.draft(history, max_len)
        self._last = (len(history), getattr(self.inner, "last_drafter", self.inner.name), list(out))
        return out

    def feedback(self, n_drafted: int, n_accepted: int) -> None:
        self.inner.feedback(n_drafted, n_accepted)
        if self._last is None:
            raise ValueError("feedback without a draft")
        position, name, tokens = self._last
        if n_drafted:
            self.records.append(DraftRecord(position, name, tokens[:n_drafted], n_accepted))
        self._last = None
