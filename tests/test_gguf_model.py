"""Loader tests: every architecture x type loads; every bad file is refused."""

from __future__ import annotations

import shutil
import struct

import numpy as np
import pytest
from gguf import GGMLQuantizationType as Q
from gguf import GGML_QUANT_SIZES, GGUFReader, GGUFValueType
from gguf import quants as gquants

from ditto.engine.gguf_model import (
    SUPPORTED_ARCHS,
    SUPPORTED_TYPES,
    GGUFError,
    load_model_file,
    row_bytes,
)
from gguf_factory import DROP, Typed, build_vocab, write_tiny_gguf

ALL_TYPES = sorted(SUPPORTED_TYPES)


# ---------------------------------------------------------------------------
# valid files
# ---------------------------------------------------------------------------


def _check_matrix(m, rows, cols, qtype):
    assert (m.rows, m.cols, m.type) == (rows, cols, int(qtype))
    assert m.data.dtype == np.uint8 and m.data.flags.c_contiguous
    assert m.data.shape == (rows, row_bytes(qtype, cols))
    assert m.data.base is not None  # a view on the mapped file, not a copy


def _dequant(m):
    if m.type == Q.F32:
        return m.data.view(np.float32)
    if m.type == Q.F16:
        return m.data.view(np.float16).astype(np.float32)
    return gquants.dequantize(m.data, Q(m.type))


@pytest.mark.parametrize("arch", SUPPORTED_ARCHS)
@pytest.mark.parametrize("qtype", ALL_TYPES, ids=lambda t: t.name)
def test_every_arch_and_type_loads(tiny_model_path, arch, qtype):
    path = tiny_model_path(arch, qtype, tied_output=False)
    mf = load_model_file(path)
    hp = mf.hparams
    big = GGML_QUANT_SIZES[qtype][0] == 256
    assert hp.arch == arch
    assert (hp.n_embd, hp.n_ff) == ((256, 512) if big else (64, 128))
    assert (hp.n_layer, hp.n_head, hp.n_head_kv) == (2, 4, 2)
    assert hp.head_dim == hp.n_embd // 4
    assert hp.n_vocab == len(build_vocab(arch).tokens) == len(mf.tokenizer.tokens)
    assert hp.rope_neox == (arch != "llama")
    assert hp.sliding_window == 0 and hp.n_ctx_train == 512
    q_dim, kv_dim = hp.n_head * hp.head_dim, hp.n_head_kv * hp.head_dim
    entry = hp.architecture

    _check_matrix(mf.tok_embd, hp.n_vocab, hp.n_embd, qtype)
    _check_matrix(mf.output, hp.n_vocab, hp.n_embd, qtype)
    assert not mf.tied_output
    assert mf.output_norm.dtype == np.float32 and mf.output_norm.shape == (hp.n_embd,)
    assert len(mf.layers) == hp.n_layer
    for layer in mf.layers:
        _check_matrix(layer.wq, q_dim, hp.n_embd, qtype)
        _check_matrix(layer.wk, kv_dim, hp.n_embd, qtype)
        _check_matrix(layer.wv, kv_dim, hp.n_embd, qtype)
        _check_matrix(layer.wo, hp.n_embd, q_dim, qtype)
        _check_matrix(layer.w_gate, hp.n_ff, hp.n_embd, qtype)
        _check_matrix(layer.w_up, hp.n_ff, hp.n_embd, qtype)
        _check_matrix(layer.w_down, hp.n_embd, hp.n_ff, qtype)
        for norm in (layer.attn_norm, layer.ffn_norm):
            assert norm.dtype == np.float32 and norm.shape == (hp.n_embd,)
        biases = (layer.bq, layer.bk, layer.bv)
        if entry.qkv_bias == "required":
            assert [b.shape for b in biases] == [(q_dim,), (kv_dim,), (kv_dim,)]
            assert all(b.dtype == np.float32 for b in biases)
        else:
            assert biases == (None, None, None)
        for norm, n, present in ((layer.q_norm, hp.head_dim, entry.qk_norm),
                                 (layer.k_norm, hp.head_dim, entry.qk_norm),
                                 (layer.post_attn_norm, hp.n_embd, entry.post_norms),
                                 (layer.post_ffn_norm, hp.n_embd, entry.post_norms)):
            assert (norm is not None) == present
            assert not present or (norm.dtype == np.float32 and norm.shape == (n,))
    # the factory's weights are well-scaled: ~N(0, 0.05) after dequantization
    w = _dequant(mf.layers[0].w_down)
    assert np.isfinite(w).all() and 0.02 < float(w.std()) < 0.1


def test_tied_output_is_token_embedding(tiny_model_path):
    mf = load_model_file(tiny_model_path("llama", Q.Q4_1, embd_type=Q.Q8_0))
    assert mf.tied_output and mf.output is mf.tok_embd
    assert mf.tok_embd.type == Q.Q8_0 and mf.layers[0].wq.type == Q.Q4_1


@pytest.mark.parametrize("norm_type", [Q.F16, Q.BF16], ids=lambda t: t.name)
def test_half_precision_norms_become_float32(tiny_model_path, norm_type):
    path = tiny_model_path("qwen2", Q.Q8_0, norm_type=norm_type)
    mf = load_model_file(path)
    reader = GGUFReader(path)
    raw = {t.name: t for t in reader.tensors}["blk.1.attn_norm.weight"]
    expected = gquants.dequantize(raw.data, norm_type)
    np.testing.assert_array_equal(mf.layers[1].attn_norm, expected)
    assert mf.layers[1].attn_norm.dtype == np.float32
    assert mf.layers[0].bk.dtype == np.float32


def test_llama_accepts_optional_qkv_biases(tiny_model_path):
    mf = load_model_file(tiny_model_path("llama", Q.Q8_0, qkv_bias=True))
    assert mf.layers[0].bq is not None and mf.layers[0].bq.shape == (64,)


def test_sliding_window_and_hparams(tiny_model_path):
    path = tiny_model_path("qwen2", Q.F16, sliding_window=128, n_layer=3, n_head=8, n_head_kv=8)
    hp = load_model_file(path).hparams
    assert (hp.sliding_window, hp.n_layer, hp.n_head, hp.n_head_kv, hp.head_dim) == (128, 3, 8, 8, 8)
    assert hp.rope_base == 1e6 and abs(hp.rms_eps - 1e-6) < 1e-12


def test_tokenizer_data(tiny_model_path):
    tk = load_model_file(tiny_model_path("llama", Q.Q4_1)).tokenizer
    assert (tk.model, tk.pre) == ("gpt2", "smollm")
    assert tk.tokens[:3] == ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    assert tk.token_types[:4] == [3, 3, 3, 1]
    assert (tk.bos_id, tk.eos_id, tk.pad_id, tk.add_bos) == (1, 2, 2, False)
    assert "<|im_start|>" in tk.chat_template and tk.merges[0] == "Ġ Ġ"
    assert tk.fim_prefix_id is None

    tq = load_model_file(tiny_model_path("qwen2", Q.Q4_1, n_vocab=400)).tokenizer
    assert tq.pre == "qwen2" and len(tq.tokens) == 400 and tq.token_types[-1] == 5
    assert tq.tokens[tq.fim_prefix_id] == "<|fim_prefix|>"
    assert tq.tokens[tq.fim_suffix_id] == "<|fim_suffix|>"
    assert tq.tokens[tq.fim_middle_id] == "<|fim_middle|>"
    assert tq.tokens[tq.eos_id] == tq.tokens[tq.eot_id] == "<|im_end|>"


def test_metadata_and_identity(tiny_model_path):
    a = load_model_file(tiny_model_path("llama", Q.Q4_1))
    b = load_model_file(tiny_model_path("llama", Q.Q4_1, seed=1))
    assert a.metadata["llama.embedding_length"] == 64
    assert a.metadata["general.architecture"] == "llama"
    assert "tokenizer.ggml.tokens" not in a.metadata
    assert len(a.sha256_prefix) == 64
    # same header, different weights: the identity covers the header only
    assert a.sha256_prefix == b.sha256_prefix
    c = load_model_file(tiny_model_path("llama", Q.Q4_0))
    assert c.sha256_prefix != a.sha256_prefix


def test_special_ids_outside_vocab_are_ignored(tmp_path):
    path = write_tiny_gguf(tmp_path / "m.gguf", metadata={"tokenizer.ggml.padding_token_id": 10**6})
    assert load_model_file(path).tokenizer.pad_id is None


def test_real_default_model(default_model_path):
    mf = load_model_file(default_model_path)
    hp = mf.hparams
    assert (hp.arch, hp.n_vocab, hp.n_embd, hp.n_layer) == ("llama", 49152, 576, 30)
    assert (hp.n_head, hp.n_head_kv, hp.head_dim, hp.n_ff) == (9, 3, 64, 1536)
    assert hp.rope_neox is False and hp.rope_base == 100000.0
    assert mf.tied_output and mf.tok_embd.type == Q.Q8_0
    assert mf.layers[0].wq.type == Q.Q4_1 and mf.layers[29].w_down.data.shape == (576, 960)
    tk = mf.tokenizer
    assert (tk.model, tk.pre, tk.eos_id, tk.add_bos) == ("gpt2", "smollm", 2, False)
    assert tk.tokens[2] == "<|im_end|>" and len(tk.merges) == 48900


# ---------------------------------------------------------------------------
# bad files: helpers to locate and patch header fields of a valid file
# ---------------------------------------------------------------------------


@pytest.fixture
def good(tmp_path):
    return write_tiny_gguf(tmp_path / "good.gguf", "llama", Q.Q4_1)


def _copy(src, tmp_path, name="bad.gguf"):
    dst = tmp_path / name
    shutil.copyfile(src, dst)
    return dst


def _patch(path, offset, fmt, value):
    values = value if isinstance(value, tuple) else (value,)
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(struct.pack(fmt, *values))


def _kv_value_offset(path, key):
    """Offset of the value of metadata key `key` (after its type field)."""
    f = GGUFReader(path).fields[key]
    klen = int(f.parts[0][0])
    return f.offset + 8 + klen + 4


def _tensor_info(path, name):
    """(offset of dims, n_dims, offset of type field, offset of data-offset field)."""
    t = next(t for t in GGUFReader(path).tensors if t.name == name)
    nlen = int(t.field.parts[0][0])
    dims_at = t.field.offset + 8 + nlen + 4
    n_dims = int(t.field.parts[2][0])
    type_at = dims_at + 8 * n_dims
    return dims_at, n_dims, type_at, type_at + 4


def _raises(path, *fragments):
    with pytest.raises(GGUFError) as ei:
        load_model_file(path)
    msg = str(ei.value)
    for frag in fragments:
        assert frag in msg, msg
    return msg


def _last_tensor_end(path):
    r = GGUFReader(path)
    return max(t.data_offset + t.n_bytes for t in r.tensors), r.data_offset


def test_empty_file(tmp_path):
    p = tmp_path / "empty.gguf"
    p.write_bytes(b"")
    _raises(p, "empty")


def test_missing_file(tmp_path):
    _raises(tmp_path / "nope.gguf", "cannot read")


@pytest.mark.parametrize("where", ["magic", "version", "counts", "kv", "tensor_info", "data", "last_byte"])
def test_truncated(good, tmp_path, where):
    end, data_start = _last_tensor_end(good)
    cut = {
        "magic": 2,
        "version": 6,
        "counts": 20,
        "kv": 200,
        "tensor_info": data_start - 40,
        "data": (data_start + end) // 2,
        "last_byte": end - 1,
    }[where]
    p = tmp_path / "cut.gguf"
    p.write_bytes(open(good, "rb").read()[:cut])
    _raises(p, "truncated")


def test_wrong_magic(good, tmp_path):
    p = _copy(good, tmp_path)
    _patch(p, 0, "4s", b"GGML")
    _raises(p, "bad magic")


@pytest.mark.parametrize("version", [1, 4, 99])
def test_wrong_version(good, tmp_path, version):
    p = _copy(good, tmp_path)
    _patch(p, 4, "<I", version)
    _raises(p, f"unsupported GGUF version {version}")


def test_big_endian_refused(good, tmp_path):
    p = _copy(good, tmp_path)
    _patch(p, 4, ">I", 3)
    _raises(p, "big-endian")


def test_absurd_tensor_count(good, tmp_path):
    p = _copy(good, tmp_path)
    _patch(p, 8, "<Q", 2**62)
    _raises(p, "tensor count")


def test_absurd_dimension(tmp_path):
    p = write_tiny_gguf(
        tmp_path / "m.gguf", metadata={"llama.embedding_length": Typed(2**40, GGUFValueType.UINT64)}
    )
    _raises(p, "llama.embedding_length", str(2**40), "out of range")


def test_absurd_string_length(good, tmp_path):
    p = _copy(good, tmp_path)
    _patch(p, _kv_value_offset(good, "general.name"), "<Q", 2**62)
    _raises(p, "general.name", "string length")


def test_string_length_past_end(good, tmp_path):
    p = _copy(good, tmp_path)
    _patch(p, _kv_value_offset(good, "tokenizer.chat_template"), "<Q", 10**6)
    _raises(p, "tokenizer.chat_template", "truncated")


def test_absurd_array_length(good, tmp_path):
    p = _copy(good, tmp_path)
    _patch(p, _kv_value_offset(good, "tokenizer.ggml.token_type") + 4, "<Q", 2**62)
    _raises(p, "tokenizer.ggml.token_type", "array length")


def test_array_length_past_end(good, tmp_path):
    # Within the length limit but past the end of the file: GGUFReader alone
    # would loop (allocating) for ever on this one.
    # (a uint8 array: GGUFReader's loop then reads 0 bytes per element).
    p = _copy(good, tmp_path)
    _patch(p, _kv_value_offset(good, "tokenizer.ggml.token_type"), "<IQ", (GGUFValueType.UINT8, 1 << 20))
    _raises(p, "tokenizer.ggml.token_type", "truncated")


def test_unknown_value_type(good, tmp_path):
    p = _copy(good, tmp_path)
    _patch(p, _kv_value_offset(good, "general.name") - 4, "<I", 77)
    _raises(p, "general.name", "unknown value type 77")


def test_invalid_utf8_key(good, tmp_path):
    f = GGUFReader(good).fields["general.name"]
    p = _copy(good, tmp_path)
    _patch(p, f.offset + 8, "2s", b"\xff\xfe")
    _raises(p, "UTF-8")


def test_bad_alignment(tmp_path):
    p = write_tiny_gguf(tmp_path / "m.gguf", metadata={"general.alignment": 3})
    _raises(p, "general.alignment")


def test_tensor_offset_past_end(good, tmp_path):
    p = _copy(good, tmp_path)
    _, _, _, off_at = _tensor_info(good, "blk.1.ffn_down.weight")
    _patch(p, off_at, "<Q", 2**40)
    _raises(p, "blk.1.ffn_down.weight", "beyond the end")


def test_tensor_offset_misaligned(good, tmp_path):
    p = _copy(good, tmp_path)
    _, _, _, off_at = _tensor_info(good, "blk.0.attn_q.weight")
    old = struct.unpack("<Q", open(good, "rb").read()[off_at : off_at + 8])[0]
    _patch(p, off_at, "<Q", old + 1)
    _raises(p, "blk.0.attn_q.weight", "not aligned")


def test_absurd_tensor_dims(good, tmp_path):
    p = _copy(good, tmp_path)
    dims_at, _, _, _ = _tensor_info(good, "token_embd.weight")
    _patch(p, dims_at + 8, "<Q", 2**60)
    _raises(p, "token_embd.weight", "beyond the end")


def test_too_many_tensor_dims(good, tmp_path):
    p = _copy(good, tmp_path)
    dims_at, _, _, _ = _tensor_info(good, "token_embd.weight")
    _patch(p, dims_at - 4, "<I", 1000)
    _raises(p, "token_embd.weight", "1000 dimensions")


def test_row_not_multiple_of_block(good, tmp_path):
    p = _copy(good, tmp_path)
    dims_at, _, _, _ = _tensor_info(good, "blk.0.attn_q.weight")
    _patch(p, dims_at, "<Q", 48)  # Q4_1 blocks hold 32 values
    _raises(p, "blk.0.attn_q.weight", "not a multiple", "Q4_1")


def test_unknown_tensor_type_number(good, tmp_path):
    p = _copy(good, tmp_path)
    _, _, type_at, _ = _tensor_info(good, "blk.0.attn_k.weight")
    _patch(p, type_at, "<I", 99)
    _raises(p, "blk.0.attn_k.weight", "unknown type number 99")


def test_tensor_wrong_shape(tmp_path):
    p = write_tiny_gguf(tmp_path / "m.gguf", tensor_shapes={"blk.1.attn_k.weight": (64, 64)})
    _raises(p, "blk.1.attn_k.weight", "shape")


def test_norm_wrong_shape(tmp_path):
    p = write_tiny_gguf(tmp_path / "m.gguf", tensor_shapes={"output_norm.weight": (32,)})
    _raises(p, "output_norm.weight", "shape")


@pytest.mark.parametrize("name", ["blk.1.ffn_up.weight", "output_norm.weight", "token_embd.weight"])
def test_missing_tensor(tmp_path, name):
    p = write_tiny_gguf(tmp_path / "m.gguf", drop_tensors=[name])
    _raises(p, name, "missing")


def test_qwen2_requires_biases(tmp_path):
    p = write_tiny_gguf(tmp_path / "m.gguf", "qwen2", Q.Q8_0, drop_tensors=["blk.0.attn_v.bias"])
    _raises(p, "blk.0.attn_v.bias", "missing")


def test_unknown_architecture(tmp_path):
    p = write_tiny_gguf(tmp_path / "m.gguf", metadata={"general.architecture": "mamba"})
    _raises(p, "unsupported model architecture", "'mamba'")


@pytest.mark.parametrize("qtype", [Q.IQ2_XXS, Q.IQ3_S, Q.IQ1_S, Q.Q8_1], ids=lambda t: t.name)
def test_unsupported_tensor_type(tmp_path, qtype):
    p = write_tiny_gguf(tmp_path / "m.gguf", "llama", Q.Q8_0, tensor_types={"blk.0.ffn_gate.weight": qtype})
    _raises(p, "blk.0.ffn_gate.weight", f"type {qtype.name}", "not support")


def test_unsupported_plain_type(tmp_path):
    name = "blk.0.ffn_gate.weight"
    p = write_tiny_gguf(tmp_path / "m.gguf", drop_tensors=[name],
                        extra_tensors={name: np.zeros((128, 64), np.float64)})
    _raises(p, name, "type F64", "not support")


def test_unsupported_norm_type(tmp_path):
    p = write_tiny_gguf(tmp_path / "m.gguf", "llama", Q.Q8_0, tensor_types={"blk.1.ffn_norm.weight": Q.Q8_0})
    _raises(p, "blk.1.ffn_norm.weight", "Q8_0")


def test_n_head_not_dividing_n_embd(tmp_path):
    p = write_tiny_gguf(tmp_path / "m.gguf", metadata={"llama.attention.head_count": 5})
    _raises(p, "not divisible", "head_count (5)")


def test_n_head_kv_not_dividing_n_head(tmp_path):
    p = write_tiny_gguf(tmp_path / "m.gguf", metadata={"llama.attention.head_count_kv": 3})
    _raises(p, "head_count_kv (3)")


def test_head_dim_odd(tmp_path):
    p = write_tiny_gguf(tmp_path / "m.gguf", n_embd=36, n_head=4, n_head_kv=4, embd_type=Q.F32,
                        weight_type=Q.F32)
    _raises(p, "head dimension 9")


def test_partial_rope_refused(tmp_path):
    p = write_tiny_gguf(tmp_path / "m.gguf", metadata={"llama.rope.dimension_count": 8})
    _raises(p, "partial rope")


@pytest.mark.parametrize("kind", ["yarn", "linear"])
def test_rope_scaling_refused(tmp_path, kind):
    p = write_tiny_gguf(tmp_path / "m.gguf", metadata={"llama.rope.scaling.type": kind})
    _raises(p, "rope scaling", repr(kind))


def test_rope_scaling_none_accepted(tmp_path):
    p = write_tiny_gguf(tmp_path / "m.gguf", metadata={"llama.rope.scaling.type": "none"})
    load_model_file(p)


def test_missing_required_key(tmp_path):
    p = write_tiny_gguf(tmp_path / "m.gguf", metadata={"llama.feed_forward_length": DROP})
    _raises(p, "llama.feed_forward_length", "missing")


def test_wrong_key_type(tmp_path):
    p = write_tiny_gguf(tmp_path / "m.gguf", metadata={"llama.block_count": "two"})
    _raises(p, "llama.block_count", "integer")


def test_per_layer_head_counts_refused(tmp_path):
    p = write_tiny_gguf(tmp_path / "m.gguf", metadata={"llama.attention.head_count": [4, 4]})
    _raises(p, "llama.attention.head_count", "integer")


@pytest.mark.parametrize("key,value", [("llama.block_count", 0), ("llama.context_length", 0),
                                       ("llama.attention.layer_norm_rms_epsilon", float("nan")),
                                       ("llama.rope.freq_base", -1.0)])
def test_out_of_range_values(tmp_path, key, value):
    p = write_tiny_gguf(tmp_path / "m.gguf", metadata={key: value})
    _raises(p, key, "out of range")


def test_vocab_size_mismatch(tmp_path):
    p = write_tiny_gguf(tmp_path / "m.gguf", metadata={"llama.vocab_size": 1000})
    _raises(p, "vocab_size", "1000")


def test_embedding_rows_must_match_vocab(tmp_path):
    p = write_tiny_gguf(tmp_path / "m.gguf", tensor_shapes={"token_embd.weight": (500, 64)})
    _raises(p, "token_embd.weight", "shape")


def test_token_type_length_mismatch(tmp_path):
    p = write_tiny_gguf(tmp_path / "m.gguf", metadata={"tokenizer.ggml.token_type": [1, 1, 1]})
    _raises(p, "tokenizer.ggml.token_type", "3 entries")


def test_missing_token_list(tmp_path):
    p = write_tiny_gguf(tmp_path / "m.gguf", metadata={"tokenizer.ggml.tokens": DROP})
    _raises(p, "tokenizer.ggml.tokens", "missing")


def test_rope_freqs_tensor_refused(tmp_path):
    p = write_tiny_gguf(tmp_path / "m.gguf", extra_tensors={"rope_freqs.weight": np.ones(8, np.float32)})
    _raises(p, "rope_freqs.weight")


def test_unexpected_tensor_refused(tmp_path):
    p = write_tiny_gguf(tmp_path / "m.gguf", extra_tensors={"blk.0.attn_output.bias": np.ones(64, np.float32)})
    _raises(p, "unexpected tensors", "blk.0.attn_output.bias")


def test_nan_norms_are_allowed(tmp_path):
    p = write_tiny_gguf(tmp_path / "m.gguf", drop_tensors=["output_norm.weight"],
                        extra_tensors={"output_norm.weight": np.full(64, np.nan, np.float32)})
    assert np.isnan(load_model_file(p).output_norm).all()
