"""How many prompt tokens a completion can evaluate within its prefill budget,
from the prefill speed measured on this machine while the server runs.

A completion whose prompt is not cached yet (a file just opened, a jump far
from the cached window) would otherwise spend most of its time budget in
prefill; with this rule it is answered from a shorter window that fits the
budget at the measured speed (completer.py), and the whole window is
prefilled in the background for the completions after it.
"""
from __future__ import annotations

MIN_MEASURED_TOKENS = 32    # a smaller evaluation times latency more than throughput
DECAY = 0.5                 # weight of the earlier measurements at each new one (load changes)


class PrefillMeter:
    """Prefill speed, tokens per second, over the recent prefills (weighted by their tokens)."""

    def __init__(self) -> None:
        self._tokens = 0.0
        self._seconds = 0.0

    def add(self, tokens: int, seconds: float) -> None:
        """One prefill: `tokens` evaluated in `seconds`."""
        if tokens < MIN_MEASURED_TOKENS or seconds <= 0:
            return
        self._tokens = self._tokens * DECAY + tokens
        self._seconds = self._seconds * DECAY + seconds

    @property
    def rate(self) -> float | None:
        """Tokens per second, or None before the first measurement."""
        return self._tokens / self._seconds if self._seconds else None

    def tokens_within(self, seconds: float, floor: int) -> int:
        """Tokens the measured speed evaluates in `seconds`; `floor` at least (and
        while nothing has been measured)."""
        rate = self.rate
        return floor if rate is None else max(floor, int(rate * seconds))


def prefill_budget_seconds(settings) -> float:
    """The settings' prefill budget: prefillBudgetMs, by default a quarter of the time budget."""
    ms = settings.prefill_budget_ms
    return (settings.time_budget_ms / 4 if ms is None else ms) / 1000
