"""Shared pieces of the lossless-speculation tests: a drafter that is right,
partly right or wrong at random, plain greedy decoding as the oracle, and a
hypothesis recipe for several requests sharing forward passes."""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from ditto._native import Context
from ditto.engine.decode import Request
from ditto.engine.drafters import AdaptiveLength, DrafterBase


class NoisyOracle(DrafterBase):
    """Drafts the known greedy continuation, corrupted at random places, so
    drafts are accepted whole, in part or not at all."""

    name = "noisy-oracle"

    def __init__(self, truth: list[int], prompt_len: int, n_vocab: int, error_rate: float, seed: int):
        super().__init__()
        self.truth, self.prompt_len, self.n_vocab = truth, prompt_len, n_vocab
        self.error_rate = error_rate
        self.rng = np.random.default_rng(seed)

    def _propose(self, history, max_len):
        done = len(history) - self.prompt_len
        draft = list(self.truth[done:done + max_len])
        for i in range(len(draft)):
            if self.rng.random() < self.error_rate:
                draft[i] = int(self.rng.integers(0, self.n_vocab))
        return draft


def plain(model, prompt: list[int], n: int, **context_options) -> list[int]:
    """Plain greedy decoding, one token per pass, on a fresh full-cache context
    (context_options: Context's precision, kv_type)."""
    from ditto.engine.decode import Decoder

    ctx = Context(model, n_seq=1, n_ctx=256, max_batch=64, n_threads=1, **context_options)
    req = Request(prompt=prompt, max_tokens=n)
    Decoder(ctx).run([req])
    return req.output


def draw_noisy_requests(data, model, *, max_prompt: int, max_new: int, max_draft: int, **context_options
                        ) -> tuple[list[Request], list[list[int]]]:
    """1-3 requests (sequences 0..n-1) with random prompts and noisy-oracle
    drafters of random draft lengths, and each one's plain greedy output."""
    n_vocab = model.n_vocab
    n_req = data.draw(st.integers(1, 3), label="requests sharing passes")
    prompts = [data.draw(st.lists(st.integers(0, n_vocab - 1), min_size=1, max_size=max_prompt), label="prompt")
               for _ in range(n_req)]
    n_new = data.draw(st.integers(1, max_new), label="new tokens")
    truths = [plain(model, p, n_new, **context_options) for p in prompts]
    reqs = []
    for i, (p, truth) in enumerate(zip(prompts, truths)):
        drafter = NoisyOracle(truth, len(p), n_vocab, data.draw(st.sampled_from([0.0, 0.05, 0.3, 1.0])), seed=i)
        max_len = data.draw(st.integers(1, max_draft), label="max draft")
        reqs.append(Request(prompt=p, max_tokens=n_new, seq=i, drafter=drafter,
                            draft_length=AdaptiveLength(initial=max_len, min_len=1, max_len=max_len)))
    return reqs, truths
