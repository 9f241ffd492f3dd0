"""Several drafters behind one interface."""

from __future__ import annotations

from typing import Sequence

from .base import Drafter, DrafterBase


class CombinedDrafter(DrafterBase):
    """mode="first": the first non-empty draft in order; "longest": the longest
    (ties: earlier); "best": the draft with the most expected accepted tokens,
    its length times its drafter's recent acceptance rate (so a drafter that
    keeps missing, e.g. the edit drafter after the model left the original,
    gives way to one that is being accepted).

    A `leader` (a drafter with a `held` count: the edit drafter) wins every
    disagreement in "best" mode once its alignment has held LEAD_AFTER
    tokens: where the document's copy of the original says X and the edit
    drafter, following the same place, says the renamed Y, the edit drafter
    knows about the rename. Before that its alignment may be a coincidence
    (an answer looping over its own text meets the original again). A
    leader's draft that the other one merely extends is not a disagreement,
    and neither does it win over a draft of the answer's own earlier text
    (`from_source` False): that text already holds the edits, and an answer
    repeating itself differently from the original (a looping answer) is
    followed better by its own text (on kept rewrites the leader's long
    drafts there lost 55 tokens at a time).

    Feedback goes to whichever drafter's draft was used, so each keeps honest
    counters. Drafters skipped in "first" mode catch up on the history at
    their next call (their indexes are incremental).
    """

    MODES = ("first", "longest", "best")
    DECAY = 0.7          # weight of the past in the acceptance estimate
    PRIOR = 0.5          # acceptance assumed before any feedback
    LEAD_AFTER = 32      # tokens a leader's alignment must have held to win disagreements

    def __init__(self, drafters: Sequence[Drafter], mode: str = "first", leader: Drafter | None = None) -> None:
        super().__init__()
        if mode not in self.MODES:
            raise ValueError(f"unknown mode {mode!r}; valid: {', '.join(self.MODES)}")
        if not drafters:
            raise ValueError("CombinedDrafter needs at least one drafter")
        self.drafters = list(drafters)
        if leader is not None and (mode != "best" or not any(d is leader for d in self.drafters)):
            raise ValueError("a leader must be one of the drafters, in mode 'best'")
        self.leader = leader
        self.mode = mode
        self.name = "+".join(d.name for d in self.drafters)
        self._chosen: Drafter | None = None
        self._rate = {id(d): self.PRIOR for d in self.drafters}
        self._offered: tuple = (0, [], None)   # ("best") history length, drafts offered there, the one used

    @property
    def last_drafter(self) -> str:
        return self._chosen.name if self._chosen is not None else self.name

    def _propose(self, history: Sequence[int], max_len: int) -> list[int]:
        if self.mode == "best":
            return self._propose_best(history, max_len)
        best: list[int] = []
        self._chosen = None
        for d in self.drafters:
            out = d.draft(history, max_len)
            if len(out) > len(best):
                best, self._chosen = out, d
                if self.mode == "first" or len(best) >= max_len:
                    break
        return best

    def _rate_draft(self, d: Drafter, rate: float) -> None:
        self._rate[id(d)] = self.DECAY * self._rate[id(d)] + (1 - self.DECAY) * rate

    def _score_offered(self, history: Sequence[int]) -> None:
        """Updates the rates of the drafters whose last drafts were not used
        with how much of them the answer (now in history) bore out; the used
        one learns from feedback. Rating only the used drafter starved the
        others: one that missed a few times was never used again, so its
        rate never recovered, and which drafter won a whole rewrite
        depended on where the first passes happened to fall."""
        position, offered, chosen = self._offered
        self._offered = (0, [], None)
        if not offered or len(history) <= position:
            return
        known = history[position:position + max(len(out) for _, out in offered)]
        for d, out in offered:
            if d is chosen:
                continue
            k = 0
            for a, b in zip(out, known):
                if a != b:
                    break
                k += 1
            # A draft that agrees with all the answer shown so far was not missed.
            self._rate_draft(d, 1.0 if k == len(out) or k == len(known) else k / len(out))

    def _propose_best(self, history: Sequence[int], max_len: int) -> list[int]:
        self._score_offered(history)
        best: list[int] = []
        best_value = 0.0
        self._chosen = None
        lead: list[int] = []
        offered = []
        for d in self.drafters:
            out = d.draft(history, max_len)
            if out:
                offered.append((d, out))
            if d is self.leader:
                lead = out
            value = len(out) * self._rate[id(d)]
            if out and value > best_value:
                best, best_value, self._chosen = out, value, d
        if lead and self._chosen is not self.leader and self.leader.held >= self.LEAD_AFTER \
                and self._chosen.from_source \
                and lead[:len(best)] != best[:len(lead)]:
            best, self._chosen = lead, self.leader
        self._offered = (len(history), offered, self._chosen)
        return best

    def feedback(self, n_drafted: int, n_accepted: int) -> None:
        super().feedback(n_drafted, n_accepted)
        if self._chosen is not None and n_drafted:
            self._rate_draft(self._chosen, n_accepted / n_drafted)
        if self._chosen is not None:
            self._chosen.feedback(n_drafted, n_accepted)
            self._chosen = None
