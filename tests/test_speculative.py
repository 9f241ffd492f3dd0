"""Lossless speculation: speculative greedy output == plain greedy output.

The property is checked on random-weight models (every architecture) with
drafters that are right, partly right and wrong at random, random draft
lengths and several requests sharing forward passes, and on the real model
with the real drafters. With sampling, the emitted token's distribution is
checked against the model's own.
"""
from __future__ import annotations

import numpy as np
import pytest
from gguf import GGMLQuantizationType as Q
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ditto._native import Context, Model
from ditto.engine.decode import Decoder, Request
from ditto.engine.drafters import make_drafter
from ditto.engine.gguf_model import load_model_file
from ditto.engine.sampling import Sampler, SamplingParams
from speculation import draw_noisy_requests, plain

_models: dict[str, Model] = {}


def model_for(path: str) -> Model:
    if path not in _models:
        _models[path] = Model(load_model_file(path))
    return _models[path]


ARCH_TYPES = [("llama", Q.Q4_1), ("qwen2", Q.Q8_0), ("llama", Q.Q6_K)]


@pytest.mark.parametrize("arch,wtype", ARCH_TYPES, ids=[f"{a}-{t.name}" for a, t in ARCH_TYPES])
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_speculative_greedy_equals_plain(tiny_model_path, arch, wtype, data):
    model = model_for(tiny_model_path(arch, wtype))
    precision = data.draw(st.sampled_from(["exact", "q16"]))
    reqs, truths = draw_noisy_requests(data, model, max_prompt=40, max_new=40, max_draft=24, precision=precision)
    ctx = Context(model, n_seq=len(reqs), n_ctx=256, max_batch=data.draw(st.sampled_from([7, 64])), n_threads=2,
                  precision=precision)
    Decoder(ctx).run(reqs)
    for req, truth in zip(reqs, truths):
        assert req.output == truth
        assert req.stats.accepted <= req.stats.drafted


@pytest.mark.parametrize("drafter_name", ["edit", "doc", "ngram-mod", "auto"])
def test_real_drafters_on_tiny_model_are_lossless(tiny_model_path, drafter_name):
    model = model_for(tiny_model_path("llama", Q.Q4_1))
    rng = np.random.default_rng(1)
    source = [int(t) for t in rng.integers(0, model.n_vocab, 30)]
    prompt = source + source[:5]
    truth = plain(model, prompt, 48)
    ctx = Context(model, n_seq=1, n_ctx=256, max_batch=64, n_threads=2)
    req = Request(prompt=prompt, max_tokens=48, drafter=make_drafter(drafter_name, source_tokens=source))
    Decoder(ctx).run([req])
    assert req.output == truth


def test_prompt_cache_reuse_is_lossless(tiny_model_path):
    """A second request sharing a prefix reuses the cached KV and still
    produces what a cold context produces."""
    model = model_for(tiny_model_path("qwen2", Q.Q4_0))
    base = list(range(3, 40))
    ctx = Context(model, n_seq=1, n_ctx=256, max_batch=64, n_threads=2)
    decoder = Decoder(ctx)
    for prompt in (base, base + [7, 8, 9], base[:20] + [11], base):
        req = Request(prompt=prompt, max_tokens=12)
        decoder.run([req])
        assert req.output == plain(model, prompt, 12)
        assert req.stats.reused_tokens > 0 or prompt is base


def test_sampling_keeps_the_distribution(tiny_model_path):
    """With temperature > 0, verifying a draft emits tokens distributed as the
    model's own (filtered) distribution: the rejection-sampling rule."""
    model = model_for(tiny_model_path("llama", Q.Q8_0))
    ctx = Context(model, n_seq=1, n_ctx=64, max_batch=16, n_threads=1)
    logits = ctx.decode([5, 6, 7, 8], range(4), [0] * 4)[0]
    sampler = Sampler(SamplingParams(temperature=1.5, top_k=40, seed=0))
    probs = sampler.probs(logits)
    n = 4000
    for draft in (int(np.argmax(probs)), int(np.argsort(probs)[-5])):
        emitted = np.zeros(model.n_vocab)
        for _ in range(n):
            _ok, tok = sampler.verify_draft(logits, draft)
            emitted[tok] += 1
        expected = probs * n
        mask = expected >= 5
        assert emitted[~mask].sum() <= max(10, 3 * expected[~mask].sum())
        chi2 = float((((emitted - expected) ** 2)[mask] / expected[mask]).sum())
        dof = int(mask.sum()) - 1
        # Far above the 99.9% quantile of chi-square(dof) for these sizes.
        assert chi2 < dof + 4.5 * np.sqrt(2 * dof) + 10, (chi2, dof)


def test_sampled_speculative_run_completes(tiny_model_path):
    model = model_for(tiny_model_path("llama", Q.Q4_1))
    ctx = Context(model, n_seq=1, n_ctx=128, max_batch=32, n_threads=1)
    source = list(range(10, 40))
    req = Request(prompt=source, max_tokens=30, sampling=SamplingParams(temperature=0.8, seed=3),
                  drafter=make_drafter("auto", source_tokens=source))
    Decoder(ctx).run([req])
    assert len(req.output) == 30 or req.finish_reason == "stop"


def assert_rewrite_lossless(model_path):
    """A real rewrite with speculation gives plain greedy decoding's tokens,
    and speculation accepted some."""
    from ditto.engine.llm import LLM
    from ditto.engine.rewrite import RewriteJob, rewrite

    source = (
        "def area(width, height):\n"
        "    return width * height\n\n\n"
        "def perimeter(width, height):\n"
        "    return 2 * (width + height)\n\n\n"
        "def describe(width, height):\n"
        "    return f'{width}x{height}: area {area(width, height)}'\n"
    )
    llm = LLM(model_path, n_ctx=1024)
    jobs = {}
    for speculate in (False, True):
        job = RewriteJob(source=source, instruction="Rename the parameter width to w.", language="python")
        jobs[speculate] = rewrite(llm, job, speculate=speculate, max_tokens=160)
    assert jobs[True].request.output == jobs[False].request.output
    assert jobs[True].request.stats.accepted > 0


@pytest.mark.slow
def test_real_model_rewrite_is_lossless(default_model_path):
    assert_rewrite_lossless(default_model_path)
