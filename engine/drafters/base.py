"""The drafter interface, its counters, and the history mirror drafters share."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Protocol, Sequence


@dataclass
class DrafterStats:
    """What a drafter proposed and what the model kept (llama.cpp's counters)."""

    calls: int = 0           # draft() calls
    drafts_offered: int = 0  # calls that returned a non-empty draft
    drafted: int = 0         # tokens the engine verified (from feedback)
    accepted: int = 0        # of those, tokens the model accepted

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / self.drafted if self.drafted else 0.0

    @property
    def mean_accepted_length(self) -> float:
        """Accepted tokens per offered draft."""
        return self.accepted / self.drafts_offered if self.drafts_offered else 0.0

    def as_dict(self) -> dict:
        d = asdict(self)
        d["acceptance_rate"] = self.acceptance_rate
        d["mean_accepted_length"] = self.mean_accepted_length
        return d


class Drafter(Protocol):
    name: str
    from_source: bool   # the last draft copied the source document (see DrafterBase)

    def draft(self, history: Sequence[int], max_len: int) -> list[int]:
        """Propose up to max_len tokens to follow history (prompt + output)."""
        ...

    def feedback(self, n_drafted: int, n_accepted: int) -> None:
        """Report how many of the last draft's tokens were verified / accepted."""
        ...

    @property
    def stats(self) -> DrafterStats: ...


class DrafterBase:
    """Counts calls and feedback and enforces max_len, so drafters only propose."""

    name = "base"
    # Whether the last draft copied the source document (the original of a
    # rewrite) rather than the history's own text; drafters that can tell set it.
    from_source = False

    def __init__(self) -> None:
        self._stats = DrafterStats()

    @property
    def stats(self) -> DrafterStats:
        return self._stats

    @property
    def last_drafter(self) -> str:
        """The name of the drafter whose draft draft() returned last."""
        return self.name

    def draft(self, history: Sequence[int], max_len: int) -> list[int]:
        self._stats.calls += 1
        if max_len <= 0:
            return []
        out = self._propose(history, max_len)[:max_len]
        if out:
            self._stats.drafts_offered += 1
        return out

    def feedback(self, n_drafted: int, n_accepted: int) -> None:
        if not 0 <= n_accepted <= n_drafted:
            raise ValueError(f"accepted {n_accepted} of {n_drafted} drafted tokens")
        self._stats.drafted += n_drafted
        self._stats.accepted += n_accepted

    def _propose(self, history: Sequence[int], max_len: int) -> list[int]:
        raise NotImplementedError


class HistoryMirror:
    """A drafter's copy of the history it has consumed.

    sync() says where the new tokens start. Appending (the normal case) is
    checked by comparing the whole mirror with the history's prefix (one
    C-level list comparison, microseconds next to a forward pass); a history
    that shrank or changed costs one longest-common-prefix scan. Checking
    only a few tail tokens once took an edit in the middle that kept the
    length and the tail for an append, and drafters then drafted text the
    history no longer held.
    """

    def __init__(self) -> None:
        self.tokens: list[int] = []

    def __len__(self) -> int:
        return len(self.tokens)

    def sync(self, history: Sequence[int]) -> int:
        """Make the mirror equal history; return the first position that is new."""
        old = self.tokens
        n_old = len(old)
        if len(history) >= n_old and list(history[:n_old]) == old:
            start = n_old
        else:
            start = 0
            for a, b in zip(old, history):
                if a != b:
                    break
                start += 1
            del old[start:]
        old.extend(map(int, history[start:]))
        return start
