"""Ring KV cache for sliding-window models (Context(kv_ring=...)).

A ring keeps R slots per sequence (position p in slot p % R) in every
sliding layer (global-attention layers, as Gemma 3 mixes in, keep every
position), so old positions are overwritten: its logits must still equal the full cache's bit
for bit (prefill, incremental, mixed batches, every ISA); truncating into
overwritten positions is refused; a checkpoint taken before a pass,
restored after it, plus a replay of the accepted tokens, leaves the
sequence exactly as if the draft had never been fed; speculative greedy
decoding on a ring equals plain greedy decoding; save / load round-trip.
All of it with an f32, an f16 and a bf16 cache (KV), against the full cache of the
same kv_type.
"""
from __future__ import annotations

import numpy as np
import pytest
from gguf import GGMLQuantizationType as Q
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ditto._native import Context, Model
from ditto.engine.decode import Decoder, Request
from ditto.engine.drafters import AdaptiveLength
from ditto.engine.gguf_model import load_model_file
from speculation import NoisyOracle, draw_noisy_requests, plain

_models: dict[str, Model] = {}

# (arch, weight type, window, extra model args)
MODELS = {
    "llama-w20": ("llama", Q.Q4_1, 20, {}),
    "qwen2-w5-gqa4": ("qwen2", Q.Q8_0, 5, {"n_head": 8, "n_head_kv": 2}),
    "llama-w16-mha": ("llama", Q.F16, 16, {"n_head_kv": 4}),
    # layers slide / global / slide: the ring in layers 0 and 2 only
    "gemma3-w20-mixed": ("gemma3", Q.Q8_0, 20, {"n_layer": 3, "metadata": {"gemma3.attention.sliding_window_pattern": 2}}),
}


@pytest.fixture
def model_of(tiny_model_path):
    def get(name: str) -> Model:
        arch, wtype, window, kw = MODELS[name]
        path = tiny_model_path(arch, wtype, sliding_window=window, **kw)
        if path not in _models:
            _models[path] = Model(load_model_file(path))
        assert _models[path].hparams.sliding_window == window
        return _models[path]
    return get




def feed(ctx, seq, toks, want_all=True):
    start = ctx.seq_len(seq)
    n = len(toks)
    want = np.ones(n, np.uint8) if want_all else None
    return ctx.decode(np.asarray(toks, np.int32), np.arange(start, start + n), np.full(n, seq), want)


def tokens(model, n, seed):
    return [int(t) for t in np.random.default_rng(seed).integers(0, model.n_vocab, n)]


def full_logits(model, toks, kv_type="f32"):
    """Every token's logits from the full cache, one sequence alone."""
    ctx = Context(model, n_seq=1, n_ctx=512, max_batch=512, n_threads=2, kv_type=kv_type)
    return feed(ctx, 0, toks)


KV = ["f32", "f16", "bf16"]


# slots: None = the default ring (window + 63), else the requested slot count
RINGS = [True, 1, 24]


def test_ring_size_and_options(model_of, tiny_model_path):
    m = model_of("llama-w20")
    assert Context(m, n_ctx=256, kv_ring=True).ring_slots == 96          # 20 + 63 -> 96
    assert Context(m, n_ctx=256, kv_ring=1).ring_slots == 32             # at least the window
    assert Context(m, n_ctx=256, kv_ring=33).ring_slots == 48
    assert Context(m, n_ctx=256).ring_slots == 0
    plain = Model(load_model_file(tiny_model_path("llama", Q.Q4_1)))
    with pytest.raises(ValueError):
        Context(plain, n_ctx=64, kv_ring=True)                           # no sliding window
    with pytest.raises(ValueError):
        Context(m, n_ctx=64, kv_ring=-3)


@pytest.mark.parametrize("kv,esize", [("f32", 4), ("f16", 2), ("bf16", 2)])
def test_kv_bytes_of_sliding_and_global_layers(model_of, kv, esize):
    """A ring's memory: R slots in each sliding layer, every position of the
    context (in whole key blocks) in each global one."""
    for name in ("llama-w20", "gemma3-w20-mixed"):
        m = model_of(name)
        hp = m.hparams
        slides = [hp.layer_slides(i) for i in range(hp.n_layer)]
        per_slot = 2 * esize * hp.n_head_kv * hp.head_dim * 3      # keys + values, 3 sequences
        full = Context(m, n_seq=3, n_ctx=250, kv_type=kv)
        assert full.kv_bytes == per_slot * 256 * hp.n_layer
        ring = Context(m, n_seq=3, n_ctx=250, kv_ring=1, kv_type=kv)
        assert ring.kv_bytes == per_slot * (32 * sum(slides) + 256 * (len(slides) - sum(slides)))
        assert ring.kv_bytes < full.kv_bytes


@pytest.mark.parametrize("isa_id", [0, 1, 2], ids=["scalar", "avx2", "avx512"])
@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("ring", RINGS, ids=lambda r: f"ring{r}")
@pytest.mark.parametrize("kv", KV)
def test_ring_equals_full_cache_bit_for_bit(model_of, isa, isa_id, name, ring, kv):
    """Prefill far past the ring, then incremental tokens, then batches that
    mix sequences and chunk sizes: every logit equals the full cache's."""
    isa(isa_id)
    model = model_of(name)
    seqs = [tokens(model, 170, seed=s) for s in range(3)]
    expect = [full_logits(model, s, kv) for s in seqs]
    ctx = Context(model, n_seq=3, n_ctx=256, max_batch=200, n_threads=3, kv_ring=ring, kv_type=kv)
    assert 0 < ctx.ring_slots < 170
    # seq 0: one prefill of 150 (several ring laps, split into sub-passes), then one by one
    got = [feed(ctx, 0, seqs[0][:150])] + [feed(ctx, 0, seqs[0][i:i + 1]) for i in range(150, 170)]
    assert np.array_equal(np.concatenate(got), expect[0])
    assert ctx.held_from(0) == 170 - ctx.ring_slots
    # seqs 1 and 2: random chunks, interleaved in shared batches
    rng = np.random.default_rng(7)
    done = [0, 0]
    rows = [[], []]
    while min(done) < 170:
        toks, pos, sq, order = [], [], [], []
        for k in (1, 2):
            n = min(int(rng.integers(1, 40)), 170 - done[k - 1])
            toks += seqs[k][done[k - 1]:done[k - 1] + n]
            pos += range(done[k - 1], done[k - 1] + n)
            sq += [k] * n
            order.append(n)
            done[k - 1] += n
        out = ctx.decode(toks, pos, sq, np.ones(len(toks), np.uint8))
        rows[0].append(out[:order[0]])
        rows[1].append(out[order[0]:])
    for k in (1, 2):
        assert np.array_equal(np.concatenate(rows[k - 1]), expect[k]), f"sequence {k}"


@pytest.mark.parametrize("name", list(MODELS))
def test_truncate_into_overwritten_positions_is_refused(model_of, name):
    model = model_of(name)
    window = model.hparams.sliding_window
    ctx = Context(model, n_seq=2, n_ctx=256, max_batch=64, n_threads=2, kv_ring=1)
    R = ctx.ring_slots
    slack = R - window + 1               # positions of the last pass that can always be dropped
    toks = tokens(model, 3 * R, seed=3)
    feed(ctx, 0, toks[:2 * R])
    n = 2 * R
    assert ctx.held_from(0) == n - R
    assert ctx.can_truncate(0, n - slack)
    assert not ctx.can_truncate(0, n - slack - 1)
    assert ctx.can_truncate(0, 0) and ctx.can_truncate(0, n)
    before = feed(Context(model, n_seq=1, n_ctx=256, max_batch=64, kv_ring=1), 0, toks[:n + 1])[-1]
    with pytest.raises(ValueError, match="ring"):
        ctx.truncate(0, n - slack - 1)
    with pytest.raises(ValueError, match="ring"):
        ctx.copy(0, 1, n - slack - 1)
    assert ctx.seq_len(0) == n                                   # a refusal changes nothing
    assert np.array_equal(feed(ctx, 0, toks[n:n + 1])[-1], before)
    # the allowed truncation is exact
    ctx.truncate(0, n + 1 - slack)
    expect = full_logits(model, toks[:n + 5])
    assert np.array_equal(feed(ctx, 0, toks[n + 1 - slack:n + 5]), expect[n + 1 - slack:])
    ctx.copy(0, 1)
    assert np.array_equal(feed(ctx, 1, toks[n + 5:n + 6]), full_logits(model, toks[:n + 6])[-1:])
    ctx.truncate(0, 0)                                           # starting over is always possible
    assert ctx.held_from(0) == 0
    assert np.array_equal(feed(ctx, 0, toks[:3]), expect[:3])
    # a full cache always truncates
    full = Context(model, n_seq=1, n_ctx=256, max_batch=64)
    feed(full, 0, toks[:2 * R])
    assert full.can_truncate(0, 1) and full.held_from(0) == 0


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("ring", RINGS, ids=lambda r: f"ring{r}")
@pytest.mark.parametrize("n_accept", [0, 3, 17])
@pytest.mark.parametrize("kv", KV)
def test_restore_and_replay_equals_never_drafting(model_of, name, ring, n_accept, kv):
    """Checkpoint, a verify pass of pending + 40 drafts, restore, replay the
    pending token and n_accept drafts: the next logits (and every later
    one) equal those of a sequence that never saw the draft."""
    model = model_of(name)
    toks = tokens(model, 200, seed=11)
    draft = tokens(model, 40, seed=12)
    ctx = Context(model, n_seq=1, n_ctx=256, max_batch=64, n_threads=2, kv_ring=ring, kv_type=kv)
    feed(ctx, 0, toks[:120])
    fed = toks[120:121] + draft
    ck = ctx.checkpoint(0, len(fed))
    feed(ctx, 0, fed)
    keep = 120 + 1 + n_accept
    # a ring can drop at most R - window + 1 positions of the last pass
    droppable = ctx.ring_slots - model.hparams.sliding_window + 1
    assert ctx.can_truncate(0, keep) == (len(fed) - (keep - 120) <= droppable)
    ctx.restore(0, ck)
    assert ctx.seq_len(0) == 120
    truth = toks[:120] + fed[:1 + n_accept]
    feed(ctx, 0, fed[:1 + n_accept], want_all=False)             # the replay
    after = feed(ctx, 0, toks[keep:keep + 30])
    expect = full_logits(model, truth + toks[keep:keep + 30], kv)
    assert np.array_equal(after, expect[keep:])


def test_checkpoint_misuse_is_refused(model_of):
    model = model_of("llama-w20")
    ctx = Context(model, n_seq=2, n_ctx=256, max_batch=64, n_threads=1, kv_ring=1)
    feed(ctx, 0, tokens(model, 50, seed=1))
    ck = ctx.checkpoint(0, 4)
    with pytest.raises(ValueError):
        ctx.restore(1, ck)                                       # another sequence
    feed(ctx, 0, tokens(model, 5, seed=2))
    with pytest.raises(ValueError):
        ctx.restore(0, ck)                                       # moved past n_next
    with pytest.raises(ValueError):
        ctx.restore(0, ck[:-4])                                  # damaged
    # a full cache's checkpoint is a length: restore is a truncation
    full = Context(model, n_seq=1, n_ctx=256, max_batch=64, n_threads=1)
    feed(full, 0, tokens(model, 30, seed=1))
    ck = full.checkpoint(0, 10)
    feed(full, 0, tokens(model, 10, seed=3))
    full.restore(0, ck)
    assert full.seq_len(0) == 30


class CountingContext:
    """A Context that counts restores (the Decoder's copying path)."""

    def __init__(self, ctx):
        self._ctx = ctx
        self.restores = 0

    def __getattr__(self, name):
        return getattr(self._ctx, name)

    def restore(self, seq, ck):
        self.restores += 1
        return self._ctx.restore(seq, ck)


@pytest.mark.parametrize("name", ["llama-w20", "qwen2-w5-gqa4"])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_speculative_greedy_on_a_ring_equals_plain(model_of, name, data):
    model = model_of(name)
    reqs, truths = draw_noisy_requests(data, model, max_prompt=80, max_new=60, max_draft=40)
    ring = data.draw(st.sampled_from(RINGS), label="ring")
    ctx = CountingContext(Context(model, n_seq=len(reqs), n_ctx=256, max_batch=data.draw(st.sampled_from([7, 64])),
                                  n_threads=2, kv_ring=ring))
    Decoder(ctx).run(reqs)
    for req, truth in zip(reqs, truths):
        assert req.output == truth


def test_decoder_restores_and_replays_on_a_ring(model_of):
    """Deterministic: long wrong drafts on a small ring force restore + replay,
    and prompt-cache reuse falls back to a fresh prefill when the ring lost
    the prefix's window."""
    model = model_of("llama-w20")
    prompt = tokens(model, 90, seed=5)
    truth = plain(model, prompt, 50)
    ctx = CountingContext(Context(model, n_seq=1, n_ctx=256, max_batch=64, n_threads=2, kv_ring=1))
    decoder = Decoder(ctx)
    req = Request(prompt=prompt, max_tokens=50, drafter=NoisyOracle(truth, len(prompt), model.n_vocab, 0.1, seed=0),
                  draft_length=AdaptiveLength(initial=30, min_len=30, max_len=30))
    decoder.run([req])
    assert req.output == truth
    assert ctx.restores > 0 and req.stats.accepted > 0
    # prompt-cache reuse when the prompt continues the held tokens
    more = prompt + truth
    req2 = Request(prompt=more, max_tokens=5)
    decoder.run([req2])
    assert req2.stats.reused_tokens == len(more) - 1
    assert req2.output == plain(model, more, 5)
    # but the held prefix's window is gone for a prompt that branches early
    other = prompt[:40] + tokens(model, 10, seed=6)
    req3 = Request(prompt=other, max_tokens=10)
    decoder.run([req3])
    assert req3.stats.reused_tokens == 0
    assert req3.output == plain(model, other, 10)


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("kv", KV)
def test_save_load_round_trip(model_of, name, kv):
    model = model_of(name)
    toks = tokens(model, 150, seed=21)
    expect = full_logits(model, toks, kv)
    ring = Context(model, n_seq=2, n_ctx=256, max_batch=64, n_threads=2, kv_ring=1, kv_type=kv)
    R = ring.ring_slots
    feed(ring, 0, toks[:120])
    state = ring.save(0)
    ring.load(1, state)
    assert ring.save(1) == state                                       # bytes round-trip
    assert ring.seq_len(1) == 120 and ring.held_from(1) == 120 - R
    assert np.array_equal(feed(ring, 1, toks[120:150]), expect[120:150])
    # into another ring context
    other = Context(model, n_seq=1, n_ctx=256, max_batch=64, n_threads=1, kv_ring=1, kv_type=kv)
    other.load(0, state)
    assert np.array_equal(feed(other, 0, toks[120:130]), expect[120:130])
    # a full cache cannot take a state that lacks early positions...
    full = Context(model, n_seq=1, n_ctx=256, max_batch=64, n_threads=1, kv_type=kv)
    with pytest.raises(ValueError):
        full.load(0, state)
    # ...but a ring takes a full cache's state (keeping its last R positions)
    feed(full, 0, toks[:100])
    ring.load(1, full.save(0))
    assert ring.seq_len(1) == 100 and ring.held_from(1) == 100 - R
    assert np.array_equal(feed(ring, 1, toks[100:110]), expect[100:110])
    # and a short ring state (nothing overwritten yet) loads into a full cache
    ring.truncate(0, 0)
    feed(ring, 0, toks[:R - 3])
    full.load(0, ring.save(0))
    assert np.array_equal(feed(full, 0, toks[R - 3:R + 5]), expect[R - 3:R + 5])
