"""Sequence checkpoints: restore (truncate), copy, save / load round trips are
bit-exact, and a corrupted or foreign saved state is refused."""
from __future__ import annotations

import struct

import numpy as np
import pytest
from gguf import GGMLQuantizationType as Q

from ditto._native import Context, Model
from ditto.engine.gguf_model import HParams, LayerWeights, ModelFile, WeightMatrix, load_model_file


@pytest.fixture(scope="module")
def model(tiny_model_path):
    return Model(load_model_file(tiny_model_path("llama", Q.Q4_1)))


def feed(ctx, seq, tokens):
    start = ctx.seq_len(seq)
    n = len(tokens)
    return ctx.decode(tokens, range(start, start + n), [seq] * n)


def test_restore_to_checkpoint_gives_the_same_next_logits(model):
    ctx = Context(model, n_seq=1, n_ctx=128, max_batch=32, n_threads=2)
    feed(ctx, 0, list(range(1, 21)))
    mark = ctx.seq_len(0)
    first = feed(ctx, 0, [7])
    feed(ctx, 0, [9, 9, 9, 9])          # a rejected draft
    ctx.truncate(0, mark)               # restore
    assert ctx.seq_len(0) == mark
    assert np.array_equal(feed(ctx, 0, [7]), first)


def test_save_load_round_trip_is_bit_exact(model):
    ctx = Context(model, n_seq=2, n_ctx=128, max_batch=32, n_threads=2)
    feed(ctx, 0, list(range(3, 40)))
    state = ctx.save(0)
    expected = feed(ctx, 0, [5])
    ctx.load(1, state)
    assert ctx.seq_len(1) == 37
    assert np.array_equal(feed(ctx, 1, [5]), expected)
    # into a fresh context too
    other = Context(model, n_seq=1, n_ctx=128, max_batch=32, n_threads=1)
    other.load(0, state)
    assert np.array_equal(feed(other, 0, [5]), expected)


def test_f16_state_restore_and_save_load_are_bit_exact(model):
    ctx = Context(model, n_seq=2, n_ctx=128, max_batch=32, n_threads=2, kv_type="f16")
    feed(ctx, 0, list(range(3, 40)))
    state = ctx.save(0)
    f32_state = Context(model, n_seq=1, n_ctx=128, max_batch=32, n_threads=1)
    feed(f32_state, 0, list(range(3, 40)))
    assert len(state) < len(f32_state.save(0))           # half the payload
    expected = feed(ctx, 0, [5])
    feed(ctx, 0, [9, 9, 9])                              # a rejected draft
    ctx.truncate(0, 38)
    assert np.array_equal(feed(ctx, 0, [9]), feed(ctx, 1, list(range(3, 40)) + [5, 9])[-1:])
    other = Context(model, n_seq=1, n_ctx=128, max_batch=32, n_threads=1, kv_type="f16")
    other.load(0, state)
    assert other.save(0) == state
    assert np.array_equal(feed(other, 0, [5]), expected)


def test_state_of_another_kv_type_is_refused(model):
    f16 = Context(model, n_seq=1, n_ctx=64, max_batch=16, n_threads=1, kv_type="f16")
    f32 = Context(model, n_seq=1, n_ctx=64, max_batch=16, n_threads=1)
    for ctx in (f16, f32):
        feed(ctx, 0, list(range(1, 12)))
    for src, dst in ((f16, f32), (f32, f16)):
        with pytest.raises(ValueError, match="saved state does not match"):
            dst.load(0, src.save(0))
        assert dst.seq_len(0) == 11                      # unchanged


def test_copy_prefix(model):
    ctx = Context(model, n_seq=2, n_ctx=128, max_batch=32, n_threads=2)
    feed(ctx, 0, list(range(3, 30)))
    ctx.copy(0, 1, 10)
    assert ctx.seq_len(1) == 10
    fresh = Context(model, n_seq=1, n_ctx=128, max_batch=32, n_threads=2)
    feed(fresh, 0, list(range(3, 13)))
    assert np.array_equal(feed(ctx, 1, [4]), feed(fresh, 0, [4]))


def test_empty_sequence_state(model):
    ctx = Context(model, n_seq=1, n_ctx=16, max_batch=8, n_threads=1)
    state = ctx.save(0)
    ctx.load(0, state)
    assert ctx.seq_len(0) == 0


@pytest.mark.parametrize("damage", ["flip_payload", "flip_header", "truncate", "extend", "empty"])
def test_corrupted_state_is_refused(model, damage):
    ctx = Context(model, n_seq=1, n_ctx=64, max_batch=16, n_threads=1)
    feed(ctx, 0, list(range(1, 12)))
    state = bytearray(ctx.save(0))
    if damage == "flip_payload":
        state[-5] ^= 0x40
    elif damage == "flip_header":
        state[8] ^= 0x01
    elif damage == "truncate":
        state = state[:-4]
    elif damage == "extend":
        state += b"\0" * 4
    else:
        state = bytearray()
    with pytest.raises(ValueError):
        ctx.load(0, bytes(state))
    assert ctx.seq_len(0) == 11  # a refused load changes nothing


def test_foreign_state_is_refused(model, tiny_model_path):
    other = Model(load_model_file(tiny_model_path("qwen2", Q.Q8_0)))
    a = Context(other, n_seq=1, n_ctx=64, max_batch=16, n_threads=1)
    feed(a, 0, [1, 2, 3])
    b = Context(model, n_seq=1, n_ctx=64, max_batch=16, n_threads=1)
    with pytest.raises(ValueError, match="saved state"):
        b.load(0, a.save(0))


def test_state_of_a_same_shaped_model_is_refused(model, tiny_model_path):
    twin = Model(load_model_file(tiny_model_path("llama", Q.Q4_1, seed=7)))  # same shapes, other weights
    a = Context(twin, n_seq=1, n_ctx=64, max_batch=16, n_threads=1)
    feed(a, 0, [1, 2, 3])
    b = Context(model, n_seq=1, n_ctx=64, max_batch=16, n_threads=1)
    with pytest.raises(ValueError, match="saved state"):
        b.load(0, a.save(0))


def test_state_longer_than_context_is_refused(model):
    big = Context(model, n_seq=1, n_ctx=64, max_batch=64, n_threads=1)
    feed(big, 0, list(range(1, 40)))
    small = Context(model, n_seq=1, n_ctx=16, max_batch=16, n_threads=1)
    with pytest.raises(OverflowError):
        small.load(0, big.save(0))


def test_decode_rejects_bad_positions_and_ids(model):
    ctx = Context(model, n_seq=2, n_ctx=16, max_batch=8, n_threads=1)
    with pytest.raises(ValueError):
        ctx.decode([1, 2], [0, 2], [0, 0])          # gap
    with pytest.raises(ValueError):
        ctx.decode([model.n_vocab], [0], [0])        # token out of range
    with pytest.raises(IndexError):
        ctx.decode([1], [0], [2])                    # no such sequence
    with pytest.raises(OverflowError):
        ctx.decode(list(range(17)), range(17), [0] * 17)
    assert ctx.seq_len(0) == 0


# ---------------------------------------------------------------- forged bytes
# struct checkpoint_header (native/kvcache.c): magic, seq, len, lo, n_next, p0, p1, reserved.
_CHECKPOINT_HEADER = struct.Struct("<I7i")
_FIELDS = ("magic", "seq", "len", "lo", "n_next", "p0", "p1", "reserved")
INT_MAX = 2**31 - 1


def forge(checkpoint: bytes, payload: bytes | None = None, **fields) -> bytes:
    """The checkpoint with some header fields overwritten (and its payload replaced)."""
    header = dict(zip(_FIELDS, _CHECKPOINT_HEADER.unpack_from(checkpoint)))
    header.update(fields)
    rest = checkpoint[_CHECKPOINT_HEADER.size:] if payload is None else payload
    return _CHECKPOINT_HEADER.pack(*(header[f] for f in _FIELDS)) + rest


def _rows(model, n):
    """Bytes of n saved positions (keys and values of every layer and kv head)."""
    hp = model.hparams
    return bytes(2 * hp.n_layer * hp.n_head_kv * n * hp.head_dim * 4)


# Each forgery, from the honest checkpoint's bytes and header fields. None
# of them could come from dt_seq_checkpoint for this sequence now.
FORGERIES = {
    "negative len": lambda m, ck, h: forge(ck, len=-5, n_next=100),
    "len past the context": lambda m, ck, h: forge(ck, len=10**8),
    "lo above len": lambda m, ck, h: forge(ck, lo=h["len"] + 1),
    "negative lo": lambda m, ck, h: forge(ck, lo=-16),
    "negative n_next": lambda m, ck, h: forge(ck, n_next=-1),
    "p0 huge": lambda m, ck, h: forge(ck, p0=10**8, p1=10**8 + 1, payload=_rows(m, 1)),
    "p0 in another sequence's range": lambda m, ck, h: forge(ck, p0=64, p1=80, payload=_rows(m, 16)),
    "p1 before p0": lambda m, ck, h: forge(ck, p0=8, p1=4),
    "rows that checkpoint() does not save": lambda m, ck, h: forge(ck, p0=0, p1=2, payload=_rows(m, 2)),
    "reserved field set": lambda m, ck, h: forge(ck, reserved=1),
    "another sequence's checkpoint": lambda m, ck, h: forge(ck, seq=1),
    "bad magic": lambda m, ck, h: forge(ck, magic=0),
    "payload cut short or grown": lambda m, ck, h: ck[:-4] if h["p1"] > h["p0"] else ck + bytes(4),
    "header cut short": lambda m, ck, h: ck[:_CHECKPOINT_HEADER.size - 1],
}


@pytest.mark.parametrize("ring", [False, True], ids=["full", "ring"])
@pytest.mark.parametrize("forgery", FORGERIES)
def test_forged_checkpoints_are_refused_and_change_nothing(model, tiny_model_path, ring, forgery):
    """C must not trust checkpoint bytes: a header that dt_seq_checkpoint
    could not have written for this sequence is refused with a clear error,
    and neither this sequence nor its neighbours change."""
    if ring:  # 16 slots for a window of 16: a checkpoint carries the slots of positions 4..7
        m = Model(load_model_file(tiny_model_path("llama", Q.Q8_0, sliding_window=16)))
        ctx = Context(m, n_seq=3, n_ctx=64, max_batch=16, n_threads=1, kv_ring=16)
    else:
        m = model
        ctx = Context(m, n_seq=3, n_ctx=64, max_batch=16, n_threads=1)
    for s in range(3):
        feed(ctx, s, [(7 * s + t) % 50 + 3 for t in range(20)])
    honest = ctx.checkpoint(0, 4)
    header = dict(zip(_FIELDS, _CHECKPOINT_HEADER.unpack_from(honest)))
    assert header["p1"] - header["p0"] == (4 if ring else 0)
    feed(ctx, 0, [5, 6])  # within the checkpoint's reach: an honest restore works
    lens = [ctx.seq_len(s) for s in range(3)]
    states = [ctx.save(s) for s in range(3)]

    with pytest.raises(ValueError, match="restore: saved state does not match"):
        ctx.restore(0, FORGERIES[forgery](m, honest, header))

    assert [ctx.seq_len(s) for s in range(3)] == lens
    assert [ctx.save(s) for s in range(3)] == states   # every KV byte as it was
    ctx.restore(0, honest)
    assert ctx.seq_len(0) == 20


def test_a_kv_cache_whose_size_overflows_64_bits_is_refused(tmp_path):
    """dt_kv_reserve multiplies n_layer * n_seq * n_head_kv * slots *
    head_dim * 4 bytes. These dimensions (each within the loader's limits)
    make 2**64 + 37 * 2**19: unchecked, the size wrapped to 19 MB, far less
    than the offsets reach. The weights are sparse files: nothing is read."""
    n_layer, n_head, head_dim, n_ctx, n_embd = 739, 491, 618, 16 * 313809, 32
    assert n_layer * 4096 * n_head * n_ctx * head_dim * 4 == 2**64 + 37 * 2**19

    def matrix(rows, cols):
        path = tmp_path / f"{rows}x{cols}"
        if not path.exists():
            with open(path, "wb") as f:
                f.truncate(rows * cols * 4)
        data = np.memmap(path, dtype=np.uint8, mode="r", shape=(rows, cols * 4))
        return WeightMatrix(name=path.name, type=int(Q.F32), rows=rows, cols=cols, data=data)

    qd, ones = n_head * head_dim, np.ones(n_embd, np.float32)
    layer = LayerWeights(
        attn_norm=ones, wq=matrix(qd, n_embd), wk=matrix(qd, n_embd), wv=matrix(qd, n_embd),
        wo=matrix(n_embd, qd), bq=None, bk=None, bv=None, ffn_norm=ones,
        w_gate=matrix(32, n_embd), w_up=matrix(32, n_embd), w_down=matrix(n_embd, 32))
    hp = HParams(arch="llama", n_vocab=8, n_embd=n_embd, n_layer=n_layer, n_head=n_head, n_head_kv=n_head,
                 head_dim=head_dim, n_ff=32, n_ctx_train=n_ctx, rms_eps=1e-5, rope_base=1e4,
                 rope_neox=False, sliding_window=0)
    embd = matrix(8, n_embd)
    huge = Model(ModelFile(path="sparse", hparams=hp, metadata={}, tok_embd=embd, output_norm=ones,
                           output=embd, layers=(layer,) * n_layer, tokenizer=None, sha256_prefix="sparse"))
    with pytest.raises(MemoryError, match="context"):
        Context(huge, n_seq=4096, n_ctx=n_ctx, max_batch=1, n_threads=1)
