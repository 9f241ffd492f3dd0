"""Several drafters behind one interface."""

from __future__ import annotations

from typing import Sequence

from .base import Drafter, DrafterBase


class CombinedDrafter(DrafterBase):
    """mode="first": the first non-empty draft in order; "longest": the longest (ties: earlier).

    Feedback goes to whichever drafter's draft was used, so each keeps honest
    counters. Drafters skipped in "first" mode catch up on the history at
    their next call (their indexes are incremental).
    """

    MODES = ("first", "longest")

    def __init__(self, drafters: Sequence[Drafter], mode: str = "first") -> None:
        super().__init__()
        if mode not in self.MODES:
            raise ValueError(f"unknown mode {mode!r}; valid: {', '.join(self.MODES)}")
        if not drafters:
            raise ValueError("CombinedDrafter needs at least one drafter")
        self.drafters = list(drafters)
        self.mode = mode
        self.name = "+".join(d.name for d in self.drafters)
        self._chosen: Drafter | None = None

    def _propose(self, history: Sequence[int], max_len: int) -> list[int]:
        best: list[int] = []
        self._chosen = None
        for d in self.drafters:
            out = d.draft(history, max_len)
            if len(out) > len(best):
                best, self._chosen = out, d
                if self.mode == "first" or len(best) >= max_len:
                    break
        return best

    def feedback(self, n_drafted: int, n_accepted: int) -> None:
        super().feedback(n_drafted, n_accepted)
        if self._chosen is not None:
            self._chosen.feedback(n_drafted, n_accepted)
            self._chosen = None
