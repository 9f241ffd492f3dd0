"""The engine's one decode API: Decoder.run (should-stop, prefill-chunk and
between-passes hooks, continuous batching), Decoder.prefill (no logits), and
forget / adopt / cached_tokens for a sequence's cached tokens."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from gguf import GGMLQuantizationType as Q
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ditto._native import Context, Model
from ditto.engine.decode import Decoder, Request
from ditto.engine.gguf_model import load_model_file
from speculation import draw_noisy_requests, plain

REPO = Path(__file__).resolve().parent.parent
_models: dict[str, Model] = {}


def model_for(path: str) -> Model:
    if path not in _models:
        _models[path] = Model(load_model_file(path))
    return _models[path]


class RecordingContext:
    """A Context that records the want-logits mask of every forward pass."""

    def __init__(self, ctx):
        self._ctx = ctx
        self.wants: list[list[bool]] = []

    def __getattr__(self, name):
        return getattr(self._ctx, name)

    def decode(self, tokens, positions, seq_ids, want):
        self.wants.append([bool(w) for w in want])
        return self._ctx.decode(tokens, positions, seq_ids, want)


def tokens(model, n, seed):
    return [int(t) for t in np.random.default_rng(seed).integers(0, model.n_vocab, n)]


@pytest.fixture
def model(tiny_model_path):
    return model_for(tiny_model_path("llama", Q.Q4_1))


def test_prefill_asks_for_no_logits_and_serves_the_next_request(model):
    ctx = RecordingContext(Context(model, n_seq=1, n_ctx=256, max_batch=64, n_threads=2))
    decoder = Decoder(ctx)
    prompt = tokens(model, 70, seed=1)
    assert decoder.prefill(0, prompt[:60], chunk=16)
    assert len(ctx.wants) == 4                      # 60 tokens, 16 per pass
    assert not any(any(w) for w in ctx.wants)       # no output-head row anywhere
    assert decoder.cached_tokens(0) == prompt[:60]
    req = Request(prompt=prompt, max_tokens=10)
    decoder.run([req])
    assert req.stats.reused_tokens == 60
    assert req.output == plain(model, prompt, 10)


def test_prefill_stops_between_passes_and_keeps_what_it_evaluated(model):
    ctx = Context(model, n_seq=1, n_ctx=256, max_batch=64, n_threads=2)
    decoder = Decoder(ctx)
    prompt = tokens(model, 50, seed=2)
    passes = []
    assert not decoder.prefill(0, prompt, chunk=10, should_stop=lambda: len(passes) == 2,
                               between=lambda: passes.append(1))
    assert decoder.cached_tokens(0) == prompt[:20]
    assert decoder.prefill(0, prompt, chunk=10)     # resumes from the cached 20
    req = Request(prompt=prompt + [3], max_tokens=6)
    decoder.run([req])
    assert req.stats.reused_tokens == 50
    assert req.output == plain(model, prompt + [3], 6)


def test_run_prefills_in_chunks_and_a_stop_keeps_the_chunks(model):
    ctx = Context(model, n_seq=1, n_ctx=256, max_batch=64, n_threads=2)
    decoder = Decoder(ctx)
    prompt = tokens(model, 40, seed=3)
    passes = []
    req = Request(prompt=prompt, max_tokens=5)
    decoder.run([req], lambda: len(passes) == 3, prefill_chunk=8, between=lambda: passes.append(1))
    assert req.finish_reason == "cancelled" and req.output == []
    assert decoder.cached_tokens(0) == prompt[:24]
    again = Request(prompt=prompt, max_tokens=5)
    decoder.run([again], prefill_chunk=8)
    assert again.stats.reused_tokens == 24
    assert again.stats.forward_passes == 2 + 4      # 16 prompt tokens in 2 passes, then 4 steps
    assert again.output == plain(model, prompt, 5)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_requests_joining_between_passes_decode_as_alone(tiny_model_path, data):
    """Continuous batching through the between-passes hook: requests admitted
    while others prefill or decode, in prompt chunks of any size, give
    exactly their plain greedy output."""
    model = model_for(tiny_model_path("qwen2", Q.Q8_0))
    reqs, truths = draw_noisy_requests(data, model, max_prompt=40, max_new=30, max_draft=16)
    chunk = data.draw(st.sampled_from([None, 1, 5, 32]), label="prefill chunk")
    later = reqs[1:]
    calls = []

    def between():
        calls.append(1)
        if len(calls) == 2:      # the rest join after the second pass
            return later
        return None

    Decoder(Context(model, n_seq=len(reqs), n_ctx=256, max_batch=64, n_threads=2)).run(
        reqs[:1], prefill_chunk=chunk, between=between)
    for req, truth in zip(reqs, truths):
        assert req.output == truth


def test_forget_and_adopt(model):
    ctx = Context(model, n_seq=2, n_ctx=256, max_batch=64, n_threads=2)
    decoder = Decoder(ctx)
    prompt = tokens(model, 30, seed=4)
    decoder.prefill(0, prompt)
    saved = ctx.save(0)
    ctx.load(1, saved)
    with pytest.raises(ValueError, match="holds 30 positions"):
        decoder.adopt(1, prompt[:5])
    decoder.adopt(1, prompt)
    req = Request(prompt=prompt + [7], max_tokens=4, seq=1)
    decoder.run([req])
    assert req.stats.reused_tokens == 30
    decoder.forget(0)
    assert ctx.seq_len(0) == 0 and decoder.cached_tokens(0) == []
    cold = Request(prompt=prompt + [7], max_tokens=4, seq=0)
    decoder.run([cold])
    assert cold.stats.reused_tokens == 0 and cold.output == req.output


def test_only_the_decoder_touches_request_and_cache_internals():
    """lsp/, bench/ and the rest of engine/ go through the public decode API."""
    private = re.compile(r"\._finish\(|\.cached\b|\._pending\b|\._prefill_from\b")
    offenders = []
    for folder in ("engine", "lsp", "bench"):
        for path in sorted((REPO / folder).rglob("*.py")):
            if path == REPO / "engine" / "decode.py":
                continue
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if private.search(line):
                    offenders.append(f"{path.relative_to(REPO)}:{n}: {line.strip()}")
    assert offenders == []
