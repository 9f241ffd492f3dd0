"""Replay a known greedy output against a drafter, as the verify loop would."""

from __future__ import annotations

from typing import Sequence

from .base import Drafter, DrafterStats
from .length import AdaptiveLength


def simulate(drafter: Drafter, reference_tokens: Sequence[int], prompt_len: int,
             length_policy: AdaptiveLength | int | None = None) -> DrafterStats:
    """Decode reference_tokens[prompt_len:] with drafter, the "model" being the reference.

    Each step is one forward pass: draft, accept the prefix that matches the
    reference, plus the one token the model produces itself. Returns the
    drafter's stats; stats.calls is the number of forward passes.
    """
    policy = AdaptiveLength() if length_policy is None else length_policy
    ref = list(reference_tokens)
    history = ref[:prompt_len]
    while len(history) < len(ref):
        k = policy if isinstance(policy, int) else policy.current
        draft = drafter.draft(history, k)
        pos = len(history)
        n_acc = 0
        for t in draft:
            if pos + n_acc >= len(ref) or ref[pos + n_acc] != t:
                break
            n_acc += 1
        drafter.feedback(len(draft), n_acc)
        if not isinstance(policy, int):
            policy.update(len(draft), n_acc)
        history.extend(ref[pos:pos + n_acc + 1])
    return drafter.stats
