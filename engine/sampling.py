"""Token choice from logits: greedy, or temperature / top-k / top-p with a seed.

The speculative verifier needs two operations beyond `sample`: the filtered
distribution itself (`probs`), and the rejection-sampling step for a
deterministic draft (`verify_draft`), which keeps the output distribution
exactly that of plain sampling.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.0  # 0 means greedy
    top_k: int = 0            # 0 means no limit
    top_p: float = 1.0
    seed: int | None = None

    def __post_init__(self) -> None:
        if not (self.temperature >= 0):
            raise ValueError("temperature must be >= 0")
        if self.top_k < 0:
            raise ValueError("top_k must be >= 0")
        if not (0 < self.top_p <= 1):
            raise ValueError("top_p must be in (0, 1]")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


class Sampler:
    def __init__(self, params: SamplingParams = SamplingParams()) -> None:
        self.params = params
        self.rng = np.random.default_rng(params.seed)

    def probs(self, logits: np.ndarray) -> np.ndarray:
        """The distribution `sample` draws from (float64, sums to 1)."""
        p = self.params
        z = _finite(logits.astype(np.float64) / p.temperature)
        if p.top_k and p.top_k < z.shape[0]:
            kth = np.partition(z, -p.top_k)[-p.top_k]
            z = np.where(z >= kth, z, -np.inf)
        z -= z.max()
        probs = np.exp(z)
        probs /= probs.sum()
        if p.top_p < 1.0:
            order = np.argsort(-probs, kind="stable")
            cum = np.cumsum(probs[order])
            keep = order[: int(np.searchsorted(cum, p.top_p)) + 1]
            mask = np.zeros_like(probs)
            mask[keep] = probs[keep]
            probs = mask / mask.sum()
        return probs

    def sample(self, logits: np.ndarray) -> int:
        if self.params.greedy:
            return int(np.argmax(logits))
        probs = self.probs(logits)
        return int(self.rng.choice(probs.shape[0], p=probs))

    def verify_draft(self, logits: np.ndarray, draft_token: int) -> tuple[bool, int]:
        """Accepts or rejects one drafted token.

        Greedy: accepted iff it is the argmax. Sampling: the drafter is
        deterministic (its distribution is a point mass on the draft), so
        the standard rule accepts with probability p(draft) and otherwise
        draws from p with the draft removed: the emitted token is then
        distributed exactly as p. Returns (accepted, token to emit).
        """
        if self.params.greedy:
            best = int(np.argmax(logits))
            return best == draft_token, best
        probs = self.probs(logits)
        if self.rng.random() < probs[draft_token]:
            return True, draft_token
        residual = probs.copy()
        residual[draft_token] = 0.0
        total = residual.sum()
        if total <= 0:  # p was a point mass on the draft: it is always accepted above
            return True, draft_token
        return False, int(self.rng.choice(residual.shape[0], p=residual / total))


def _finite(z: np.ndarray) -> np.ndarray:
    """Logits a distribution can be made of. A broken model (NaN or inf
    weights) gives NaN or infinite logits: NaN never wins, +inf always does
    (uniformly among them), and if nothing is left the choice is uniform."""
    if np.isfinite(z).all():
        return z
    top = np.isposinf(z)
    if top.any():
        return np.where(top, 0.0, -np.inf)
    z = np.where(np.isnan(z), -np.inf, z)
    return z if np.isfinite(z).any() else np.zeros_like(z)
