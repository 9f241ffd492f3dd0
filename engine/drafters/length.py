"""Draft length that follows recent acceptance."""

from __future__ import annotations


class AdaptiveLength:
    """Doubles after a fully accepted draft, halves when under half is accepted.

    Long drafts pay off while the output copies its source; after a miss they
    shrink quickly so rejected tokens stop costing verification work. Drafts
    much shorter than asked for (a drafter hedging, or running out of source)
    say little about long drafts, so they move the length neither way.
    """

    def __init__(self, initial: int = 8, min_len: int = 2, max_len: int = 64) -> None:
        if not 1 <= min_len <= max_len:
            raise ValueError(f"need 1 <= min_len <= max_len, got {min_len}, {max_len}")
        self.min_len = min_len
        self.max_len = max_len
        self.current = min(max(initial, min_len), max_len)

    def update(self, n_drafted: int, n_accepted: int) -> None:
        if 2 * n_drafted < self.current:
            return
        if n_accepted == n_drafted:
            self.current = min(self.max_len, self.current * 2)
        elif 2 * n_accepted < n_drafted:
            self.current = max(self.min_len, self.current // 2)
