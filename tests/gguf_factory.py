"""Tiny random-weight GGUF models for tests, written with gguf.GGUFWriter.

``write_tiny_gguf(path, arch, weight_type, ...)`` writes a complete model
ditto can load: hyperparameters, a small but valid GPT-2 byte-level BPE
tokenizer (256 byte tokens in GPT-2 byte-to-unicode form, a few merges,
ChatML control tokens, a ChatML chat template) and random weights of any
GGML type.

Weights: types gguf.quants can quantize (F32/F16/BF16, Q4_0, Q4_1, Q5_0,
Q5_1, Q8_0) are quantized from N(0, std) values. The others (K-quants,
IQ*) get random block bytes whose f16 scale fields are then set so that
dequantized values have about the requested std (no NaN/inf), which is all
a forward test needs.

The keyword arguments ``metadata``, ``drop_tensors``, ``tensor_types``,
``tensor_shapes`` and ``extra_tensors`` let tests build specific bad files.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType, GGUFWriter
from gguf import quants as gquants
from gguf.gguf_writer import GGUFValue

from ditto.engine.architectures import ARCHITECTURES

Q = GGMLQuantizationType

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# Words whose left-to-right merge chains make the BPE merges (GPT-2
# byte-level form: "Ġ" is a space, "Ċ" a newline).
MERGE_WORDS = (
    "ĠĠ", "ĠĠĠĠ", "ĠĠĠĠĠĠĠĠ", "ĊĠĠĠ", "ĊĠĠĠĠĠĠĠ", "in", "er", "on", "re", "at",
    "Ġthe", "Ġdef", "Ġreturn", "Ġself", "Ġimport", "Ġfor", "Ġin", "Ġif", "Ġelse",
    "Ġ=", "Ġ==", "()", "):", "Ġx", "Ġprint", "Ġclass", "Ġvalue", "Ġname", "Ġ1", "Ġ0",
    "self", "def", "print", "return", "Ġ+", "Ġ-", "Ġ(", "),", "Ġ'", "':",
)

_KQUANT_BLOCK = 256
QWEN_VOCAB = ("qwen2", "qwen3")  # architectures whose tiny vocabulary is Qwen2.5-Coder-like


@dataclass(frozen=True)
class Typed:
    """A metadata value with an explicit GGUF type (e.g. uint64 for absurd sizes)."""

    value: Any
    type: GGUFValueType
    sub_type: GGUFValueType | None = None


DROP = object()  # metadata override value: remove the key


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable unicode character map."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(
        range(ord("®"), ord("ÿ") + 1)
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


@dataclass(frozen=True)
class TinyVocab:
    tokens: list[str]
    token_types: list[int]
    merges: list[str]
    ids: dict[str, int]     # special token name -> id


def build_vocab(arch: str, n_vocab: int | None = None) -> TinyVocab:
    """Byte tokens, merged tokens and ChatML (+ FIM for qwen2/qwen3) control tokens.

    llama (SmolLM-like) and the others: control tokens first (ids 0, 1, 2).
    qwen2/qwen3 (Qwen2.5-Coder-like): control tokens after the BPE tokens. Extra ids up
    to n_vocab are "[PADi]" tokens of type UNUSED.
    """
    b2u = bytes_to_unicode()
    bpe = [b2u[b] for b in range(256)]
    seen = set(bpe)
    merges: list[str] = []
    for word in MERGE_WORDS:
        cur = word[0]
        for ch in word[1:]:
            if cur + ch not in seen:
                merges.append(f"{cur} {ch}")
                bpe.append(cur + ch)
                seen.add(cur + ch)
            cur += ch
    chatml = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    if arch in QWEN_VOCAB:
        control = chatml + ["<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>"]
        tokens = bpe + control
        types = [1] * len(bpe) + [3] * len(control)
    else:
        # phi3: the SentencePiece specials llama.cpp looks up by text in
        # phi-3 vocabularies, and Phi-3's end of turn
        control = chatml + (["<unk>", "<s>", "</s>", "<|end|>"] if arch == "phi3" else [])
        tokens = control + bpe
        types = [3] * len(control) + [1] * len(bpe)
    if n_vocab is not None:
        if n_vocab < len(tokens):
            raise ValueError(f"n_vocab must be >= {len(tokens)} for this tokenizer")
        pad = [f"[PAD{i}]" for i in range(len(tokens), n_vocab)]
        tokens = tokens + pad
        types = types + [5] * len(pad)
    ids = {t: tokens.index(t) for t in control}
    return TinyVocab(tokens=tokens, token_types=types, merges=merges, ids=ids)


def default_dims(*types: GGMLQuantizationType) -> tuple[int, int]:
    """(n_embd, n_ff): 256/512 when any type has 256-value blocks, else 64/128."""
    if any(GGML_QUANT_SIZES[Q(t)][0] > 32 for t in types if t is not None):
        return 256, 512
    return 64, 128


# ---------------------------------------------------------------------------
# random tensors of any type
# ---------------------------------------------------------------------------

# Byte offsets of f16 scale fields in a block, with a multiplier relative to
# the first ("d") field: a min field ("dmin"/"m") is set to mult*d so that
# unsigned quants come out roughly zero-centred.
_F16_FIELDS: dict[GGMLQuantizationType, list[tuple[int, float]]] = {
    Q.Q4_0: [(0, 1.0)],
    Q.Q4_1: [(0, 1.0), (2, -7.5)],
    Q.Q5_0: [(0, 1.0)],
    Q.Q5_1: [(0, 1.0), (2, -15.5)],
    Q.Q8_0: [(0, 1.0)],
    Q.Q2_K: [(80, 1.0), (82, 1.5)],
    Q.Q3_K: [(108, 1.0)],
    Q.Q4_K: [(0, 1.0), (2, 7.5)],
    Q.Q5_K: [(0, 1.0), (2, 15.5)],
    Q.Q6_K: [(208, 1.0)],
    Q.IQ4_NL: [(0, 1.0)],
    Q.IQ4_XS: [(0, 1.0)],
}
_Q6_K_SCALES = slice(192, 208)  # int8 scales: keep them small so d stays a normal f16


def random_matrix_bytes(
    rows: int, cols: int, qtype: GGMLQuantizationType, rng: np.random.Generator, std: float
) -> np.ndarray:
    """A (rows, cols) tensor of type qtype as the array GGUFWriter.add_tensor wants."""
    qtype = Q(qtype)
    if qtype == Q.F32:
        return rng.normal(0, std, (rows, cols)).astype(np.float32)
    if qtype == Q.F16:
        return rng.normal(0, std, (rows, cols)).astype(np.float16)
    block, _ = GGML_QUANT_SIZES[qtype]
    if cols % block:
        raise ValueError(f"{qtype.name} needs cols to be a multiple of {block}, got {cols}")
    try:
        return gquants.quantize(rng.normal(0, std, (rows, cols)).astype(np.float32), qtype)
    except NotImplementedError:
        return _random_blocks(rows, cols, qtype, rng, std)


def _random_blocks(
    rows: int, cols: int, qtype: GGMLQuantizationType, rng: np.random.Generator, std: float
) -> np.ndarray:
    block, tsize = GGML_QUANT_SIZES[qtype]
    nb = rows * cols // block
    raw = rng.integers(0, 256, (nb, tsize), dtype=np.uint8)
    fields = _F16_FIELDS.get(qtype, [(0, 1.0)])  # IQ types: d is the first field
    if qtype == Q.Q6_K:
        raw[:, _Q6_K_SCALES] = rng.integers(-16, 17, (nb, 16), dtype=np.int8).view(np.uint8)
    _set_f16_fields(raw, fields, 1e-3)
    if qtype not in _F16_FIELDS:
        return raw.reshape(rows, -1)  # unknown layout: bytes only matter for refusal tests
    got = float(np.std(gquants.dequantize(raw.reshape(rows, -1), qtype)))
    _set_f16_fields(raw, fields, 1e-3 * std / max(got, 1e-12))
    return raw.reshape(rows, -1)


def _set_f16_fields(raw: np.ndarray, fields: list[tuple[int, float]], d: float) -> None:
    for off, mult in fields:
        raw[:, off : off + 2] = np.full((raw.shape[0], 1), d * mult, dtype="<f2").view(np.uint8)


def random_vector(n: int, qtype: GGMLQuantizationType, rng: np.random.Generator, mean: float, std: float):
    x = (mean + rng.normal(0, std, n)).astype(np.float32)
    qtype = Q(qtype)
    if qtype == Q.F32:
        return x
    if qtype == Q.F16:
        return x.astype(np.float16)
    return gquants.quantize(x, qtype)  # BF16 (and anything else gguf.quants knows)


def _raw_dtype(qtype: GGMLQuantizationType) -> GGMLQuantizationType | None:
    return None if Q(qtype) in (Q.F32, Q.F16) else Q(qtype)


# ---------------------------------------------------------------------------
# the model
# ---------------------------------------------------------------------------


def write_tiny_gguf(
    path: str | os.PathLike,
    arch: str = "llama",
    weight_type: GGMLQuantizationType = Q.Q4_1,
    *,
    n_vocab: int | None = None,
    n_embd: int | None = None,
    n_layer: int = 2,
    n_head: int = 4,
    n_head_kv: int = 2,
    n_ff: int | None = None,
    head_dim: int | None = None,
    n_ctx_train: int = 512,
    tied_output: bool = True,
    seed: int = 0,
    sliding_window: int = 0,
    norm_type: GGMLQuantizationType = Q.F32,
    embd_type: GGMLQuantizationType | None = None,
    output_type: GGMLQuantizationType | None = None,
    qkv_bias: bool | None = None,
    fused_qkv: bool | None = None,
    std: float = 0.05,
    rms_eps: float | None = None,
    rope_base: float | None = None,
    metadata: Mapping[str, Any] | None = None,
    drop_tensors: Iterable[str] = (),
    tensor_types: Mapping[str, GGMLQuantizationType] | None = None,
    tensor_shapes: Mapping[str, tuple[int, ...]] | None = None,
    extra_tensors: Mapping[str, np.ndarray] | None = None,
) -> str:
    """Writes a random-weight model; returns the path as a string.

    Dimensions default to 64/128 (n_embd/n_ff), or 256/512 when a type with
    256-value blocks (K-quants) is used. ``embd_type`` defaults to
    ``weight_type``; ``output_type`` (untied output only) too. ``qkv_bias``
    defaults to True for qwen2 (required there), False for the others.
    ``fused_qkv`` (one attn_qkv tensor) defaults to True for phi3.
    ``head_dim`` defaults to n_embd // n_head; another value is written as
    the key/value length.
    ``metadata`` overrides keys after the defaults: a plain value (int ->
    uint32, float -> float32, str, bool, list), a ``Typed`` value, or
    ``DROP``. ``tensor_shapes`` maps a name to (rows, cols) or (n,) in
    numpy order; ``tensor_types`` overrides one tensor's type.
    """
    embd_type = weight_type if embd_type is None else embd_type
    output_type = weight_type if output_type is None else output_type
    type_overrides = dict(tensor_types or {})
    d_embd, d_ff = default_dims(weight_type, embd_type, output_type, *type_overrides.values())
    n_embd = d_embd if n_embd is None else n_embd
    n_ff = d_ff if n_ff is None else n_ff
    qkv_bias = (arch == "qwen2") if qkv_bias is None else qkv_bias
    fused_qkv = (arch == "phi3") if fused_qkv is None else fused_qkv
    head_dim = n_embd // n_head if head_dim is None else head_dim
    vocab = build_vocab(arch, n_vocab)
    n_vocab = len(vocab.tokens)

    w = GGUFWriter(os.fspath(path), arch)
    w.add_name(f"tiny-{arch}-{Q(weight_type).name}")
    w.add_context_length(n_ctx_train)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_layer_norm_rms_eps(rms_eps if rms_eps is not None else (1e-5 if arch == "llama" else 1e-6))
    w.add_rope_freq_base(rope_base if rope_base is not None else (10000.0 if arch == "llama" else 1e6))
    w.add_rope_dimension_count(head_dim)
    if head_dim != n_embd // n_head:  # as Qwen3 and Gemma 3: heads wider or narrower than n_embd / n_head
        w.add_key_length(head_dim)
        w.add_value_length(head_dim)
    w.add_vocab_size(n_vocab)
    if sliding_window:
        w.add_sliding_window(sliding_window)
    _add_tokenizer(w, arch, vocab)
    _apply_metadata(w, metadata or {})

    specs = _tensor_specs(
        ARCHITECTURES[arch], n_vocab, n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff, tied_output,
        qkv_bias, fused_qkv, weight_type, embd_type, output_type, norm_type,
    )
    rng = np.random.default_rng(seed)
    dropped = set(drop_tensors)
    for name, shape, qtype, kind in specs:
        if name in dropped:
            continue
        qtype = type_overrides.get(name, qtype)
        shape = tuple((tensor_shapes or {}).get(name, shape))
        w.add_tensor(name, _make_tensor(shape, qtype, kind, rng, std), raw_dtype=_raw_dtype(qtype))
    for name, arr in (extra_tensors or {}).items():
        w.add_tensor(name, arr)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return os.fspath(path)


def _add_tokenizer(w: GGUFWriter, arch: str, vocab: TinyVocab) -> None:
    ids = vocab.ids
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2" if arch in QWEN_VOCAB else "smollm")
    w.add_token_list(vocab.tokens)
    w.add_token_types(vocab.token_types)
    w.add_token_merges(vocab.merges)
    w.add_add_bos_token(False)
    w.add_chat_template(CHATML_TEMPLATE)
    if arch not in QWEN_VOCAB:  # as SmolLM2-Instruct
        w.add_bos_token_id(ids["<|im_start|>"])
        w.add_eos_token_id(ids["<|im_end|>"])
        w.add_unk_token_id(ids["<|endoftext|>"])
        w.add_pad_token_id(ids["<|im_end|>"])
    else:  # as Qwen2.5-Coder-Instruct
        w.add_bos_token_id(ids["<|endoftext|>"])
        w.add_eos_token_id(ids["<|im_end|>"])
        w.add_eot_token_id(ids["<|im_end|>"])
        w.add_pad_token_id(ids["<|endoftext|>"])
        # this gguf version has no add_fim_* helpers: write the keys directly
        t = "tokenizer.ggml."
        w.add_uint32(t + "fim_pre_token_id", ids["<|fim_prefix|>"])
        w.add_uint32(t + "fim_suf_token_id", ids["<|fim_suffix|>"])
        w.add_uint32(t + "fim_mid_token_id", ids["<|fim_middle|>"])
        w.add_uint32(t + "fim_pad_token_id", ids["<|fim_pad|>"])


def _apply_metadata(w: GGUFWriter, overrides: Mapping[str, Any]) -> None:
    kv = w.kv_data[0]
    for key, val in overrides.items():
        if val is DROP:
            kv.pop(key, None)
        elif isinstance(val, Typed):
            kv[key] = GGUFValue(value=val.value, type=val.type, sub_type=val.sub_type)
        elif isinstance(val, bool):
            kv[key] = GGUFValue(value=val, type=GGUFValueType.BOOL)
        elif isinstance(val, int):
            t = GGUFValueType.UINT32 if 0 <= val < 2**32 else GGUFValueType.INT64
            kv[key] = GGUFValue(value=val, type=t)
        elif isinstance(val, float):
            kv[key] = GGUFValue(value=val, type=GGUFValueType.FLOAT32)
        elif isinstance(val, str):
            kv[key] = GGUFValue(value=val, type=GGUFValueType.STRING)
        else:
            kv[key] = GGUFValue(value=list(val), type=GGUFValueType.ARRAY)


def _tensor_specs(
    arch, n_vocab, n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff, tied_output, qkv_bias,
    fused_qkv, weight_type, embd_type, output_type, norm_type,
) -> list[tuple[str, tuple[int, ...], GGMLQuantizationType, str]]:
    """(name, numpy shape, type, kind) for every tensor, in llama.cpp's order;
    the optional per-layer norms and fused matrices as the architecture
    entry says."""
    q_dim, kv_dim = n_head * head_dim, n_head_kv * head_dim
    specs = [("token_embd.weight", (n_vocab, n_embd), embd_type, "matrix")]
    for i in range(n_layer):
        p = f"blk.{i}."
        specs.append((p + "attn_norm.weight", (n_embd,), norm_type, "norm"))
        if fused_qkv:
            specs.append((p + "attn_qkv.weight", (q_dim + 2 * kv_dim, n_embd), weight_type, "matrix"))
            if qkv_bias:
                specs.append((p + "attn_qkv.bias", (q_dim + 2 * kv_dim,), norm_type, "bias"))
        else:
            specs += [
                (p + "attn_q.weight", (q_dim, n_embd), weight_type, "matrix"),
                (p + "attn_k.weight", (kv_dim, n_embd), weight_type, "matrix"),
                (p + "attn_v.weight", (kv_dim, n_embd), weight_type, "matrix"),
            ]
        if qkv_bias and not fused_qkv:
            specs += [
                (p + "attn_q.bias", (q_dim,), norm_type, "bias"),
                (p + "attn_k.bias", (kv_dim,), norm_type, "bias"),
                (p + "attn_v.bias", (kv_dim,), norm_type, "bias"),
            ]
        if arch.qk_norm:
            specs += [
                (p + "attn_q_norm.weight", (head_dim,), norm_type, "norm"),
                (p + "attn_k_norm.weight", (head_dim,), norm_type, "norm"),
            ]
        specs += [
            (p + "attn_output.weight", (n_embd, q_dim), weight_type, "matrix"),
            (p + "ffn_norm.weight", (n_embd,), norm_type, "norm"),
        ]
        if arch.fused_gate_up:
            specs.append((p + "ffn_up.weight", (2 * n_ff, n_embd), weight_type, "matrix"))
        else:
            specs += [
                (p + "ffn_gate.weight", (n_ff, n_embd), weight_type, "matrix"),
                (p + "ffn_up.weight", (n_ff, n_embd), weight_type, "matrix"),
            ]
        specs.append((p + "ffn_down.weight", (n_embd, n_ff), weight_type, "matrix"))
        if arch.post_norms:
            specs += [
                (p + "post_attention_norm.weight", (n_embd,), norm_type, "norm"),
                (p + "post_ffw_norm.weight", (n_embd,), norm_type, "norm"),
            ]
    specs.append(("output_norm.weight", (n_embd,), norm_type, "norm"))
    if not tied_output:
        specs.append(("output.weight", (n_vocab, n_embd), output_type, "matrix"))
    return specs


def _make_tensor(shape, qtype, kind, rng, std) -> np.ndarray:
    if kind == "norm":
        return random_vector(int(np.prod(shape)), qtype, rng, 1.0, 0.1).reshape(
            _byte_shape(shape, qtype)
        )
    if kind == "bias":
        return random_vector(int(np.prod(shape)), qtype, rng, 0.0, 0.02).reshape(
            _byte_shape(shape, qtype)
        )
    rows, cols = (1, shape[0]) if len(shape) == 1 else shape
    return random_matrix_bytes(rows, cols, qtype, rng, std).reshape(_byte_shape(shape, qtype))


def _byte_shape(shape: tuple[int, ...], qtype) -> tuple[int, ...]:
    if Q(qtype) in (Q.F32, Q.F16):
        return tuple(shape)
    return gquants.quant_shape_to_byte_shape(tuple(shape), Q(qtype))


# ---------------------------------------------------------------------------
# fuzzing helpers (tests/test_gguf_fuzz.py and bench/fuzz_gguf.py)
# ---------------------------------------------------------------------------

_SCALAR_FMTS = {
    GGUFValueType.UINT8: "<B", GGUFValueType.INT8: "<b", GGUFValueType.UINT16: "<H",
    GGUFValueType.INT16: "<h", GGUFValueType.UINT32: "<I", GGUFValueType.INT32: "<i",
    GGUFValueType.FLOAT32: "<f", GGUFValueType.UINT64: "<Q", GGUFValueType.INT64: "<q",
    GGUFValueType.FLOAT64: "<d", GGUFValueType.BOOL: "<B",
}
_INTERESTING_INTS = (
    0, 1, 2, 3, 7, 8, 31, 32, 33, 255, 256, 4095, 65535, 65536, 2**20, 2**31 - 1, 2**31,
    2**32 - 1, 2**32, 2**40, 2**62, 2**63, 2**64 - 1,
)
_INTERESTING_FLOATS = (float("nan"), float("inf"), -float("inf"), -1.0, 0.0, 1e-30, 1e30)


@dataclass(frozen=True)
class FuzzSeed:
    """A valid file's bytes plus the offsets of its header integer fields."""

    name: str
    data: bytes
    header_end: int                       # start of tensor data
    fields: dict[str, tuple[tuple[int, str], ...]]  # role -> ((offset, struct format), ...)


def make_fuzz_seed(path: str | os.PathLike, name: str) -> FuzzSeed:
    from gguf import GGUFReader

    r = GGUFReader(path)
    # Fields grouped by role, so mutations reach every layer of checks
    # (structure, value types, hyperparameters, tensor table) evenly.
    roles: dict[str, list[tuple[int, str]]] = {
        "header": [(4, "<I"), (8, "<Q"), (16, "<Q")], "length": [], "type": [], "value": [],
        "tensor_dim": [], "tensor_type": [], "tensor_offset": [],
    }
    for key, f in r.fields.items():
        if not key.startswith("GGUF."):
            _kv_int_fields(f, roles)
    for t in r.tensors:
        o, nlen = t.field.offset, int(t.field.parts[0][0])
        nd_at = o + 8 + nlen
        n_dims = int(t.field.parts[2][0])
        type_at = nd_at + 4 + 8 * n_dims
        roles["length"].append((o, "<Q"))
        roles["tensor_dim"] += [(nd_at, "<I")] + [(nd_at + 4 + 8 * d, "<Q") for d in range(n_dims)]
        roles["tensor_type"].append((type_at, "<I"))
        roles["tensor_offset"].append((type_at + 4, "<Q"))
    data = open(path, "rb").read()
    fields = {k: tuple(v) for k, v in roles.items() if v}
    return FuzzSeed(name=name, data=data, header_end=int(r.data_offset), fields=fields)


def _kv_int_fields(f, roles: dict[str, list[tuple[int, str]]]) -> None:
    klen = int(f.parts[0][0])
    type_at = f.offset + 8 + klen
    v = type_at + 4
    roles["length"].append((f.offset, "<Q"))
    roles["type"].append((type_at, "<I"))
    kind = f.types[0] if f.types else GGUFValueType.ARRAY
    if kind == GGUFValueType.STRING:
        roles["length"].append((v, "<Q"))
    elif kind == GGUFValueType.ARRAY:
        roles["type"].append((v, "<I"))
        roles["length"].append((v + 4, "<Q"))
        if len(f.types) > 1 and f.types[1] == GGUFValueType.STRING:
            pos = v + 12
            for idx in f.data[:3]:  # the first few element lengths
                roles["length"].append((pos, "<Q"))
                pos += 8 + int(f.parts[idx].nbytes)
        elif len(f.types) > 1 and f.types[1] in _SCALAR_FMTS:
            fmt = _SCALAR_FMTS[f.types[1]]
            roles["value"] += [(v + 12 + i * struct.calcsize(fmt), fmt) for i in range(min(3, len(f.data)))]
    elif kind in _SCALAR_FMTS:
        roles["value"].append((v, _SCALAR_FMTS[kind]))


def mutate(seed: FuzzSeed, rng) -> bytes:
    """1-3 random mutations (byte flips, header integer overwrites,
    truncation, splices, insertions, deletions), biased towards the header."""
    buf = bytearray(seed.data)
    for _ in range(rng.randint(1, 3)):
        kind = rng.choice(("flip", "int", "int", "int", "truncate", "splice", "insert", "delete"))
        _MUTATIONS[kind](buf, seed, rng)
        if not buf:
            break
    return bytes(buf)


def _pos(buf, seed, rng) -> int:
    limit = min(len(buf), seed.header_end) if rng.random() < 0.85 else len(buf)
    return rng.randrange(max(limit, 1))


def _mut_flip(buf, seed, rng):
    for _ in range(rng.randint(1, 8)):
        if buf:
            i = _pos(buf, seed, rng)
            buf[i] = rng.randrange(256) if rng.random() < 0.5 else buf[i] ^ (1 << rng.randrange(8))


def _mut_int(buf, seed, rng):
    off, fmt = rng.choice(seed.fields[rng.choice(sorted(seed.fields))])
    size = struct.calcsize(fmt)
    if off + size > len(buf):
        return
    if fmt in ("<f", "<d"):
        value = rng.choice(_INTERESTING_FLOATS)
    else:
        (old,) = struct.unpack_from(fmt, buf, off)
        value = rng.choice(
            _INTERESTING_INTS + (old + 1, old - 1, old * 2, len(buf), len(buf) - off, rng.getrandbits(64))
        )
        bits = 8 * size
        value &= (1 << bits) - 1
        if fmt[-1].islower() and value >= 1 << (bits - 1):
            value -= 1 << bits  # signed formats
    struct.pack_into(fmt, buf, off, value)


def _mut_truncate(buf, seed, rng):
    del buf[_pos(buf, seed, rng):]


def _mut_splice(buf, seed, rng):
    n = rng.randint(1, 64)
    a, b = rng.randrange(len(buf)), _pos(buf, seed, rng)
    chunk = buf[a : a + n]
    buf[b : b + len(chunk)] = chunk


def _mut_insert(buf, seed, rng):
    i = _pos(buf, seed, rng)
    buf[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))


def _mut_delete(buf, seed, rng):
    i = _pos(buf, seed, rng)
    del buf[i : i + rng.randint(1, 16)]


_MUTATIONS = {
    "flip": _mut_flip, "int": _mut_int, "truncate": _mut_truncate,
    "splice": _mut_splice, "insert": _mut_insert, "delete": _mut_delete,
}

FUZZ_SEED_CONFIGS = {
    "llama_q4_1": dict(arch="llama", weight_type=Q.Q4_1, n_layer=1),
    "qwen2_q8_0_untied": dict(arch="qwen2", weight_type=Q.Q8_0, n_layer=1, tied_output=False),
    "llama_f16_bf16norm": dict(arch="llama", weight_type=Q.F16, n_layer=1, norm_type=Q.BF16),
    "qwen2_q6_k": dict(arch="qwen2", weight_type=Q.Q6_K, n_layer=1, embd_type=Q.Q4_K),
    "gemma3_q5_0_sliding": dict(arch="gemma3", weight_type=Q.Q5_0, n_layer=2, sliding_window=8,
                                metadata={"gemma3.attention.sliding_window_pattern": 2}),
}


def write_fuzz_seeds(directory: str | os.PathLike) -> list[FuzzSeed]:
    seeds = []
    for name, cfg in FUZZ_SEED_CONFIGS.items():
        cfg = dict(cfg)
        path = os.path.join(os.fspath(directory), name + ".gguf")
        write_tiny_gguf(path, cfg.pop("arch"), cfg.pop("weight_type"), **cfg)
        seeds.append(make_fuzz_seed(path, name))
    return seeds


# ---------------------------------------------------------------------------
# valid-structure mutants: write_tiny_gguf with mutated arguments
# ---------------------------------------------------------------------------
# Byte mutants mostly die in the header walk. These files are well formed,
# with wrong values: hyperparameters, tokenizer arrays, templates, tensor
# types and shapes, weights; so cases reach the tokenizer, the template,
# the native model and the decoder.

_HPARAM_KEYS = (
    "context_length", "embedding_length", "block_count", "feed_forward_length",
    "attention.head_count", "attention.head_count_kv", "attention.layer_norm_rms_epsilon",
    "rope.freq_base", "rope.dimension_count", "attention.key_length", "attention.value_length",
    "attention.sliding_window", "vocab_size", "rope.scaling.type", "rope.scaling.factor",
)
_ODD_VALUES = (
    0, 1, 2, 3, 7, 64, 2**31 - 1, 2**32 - 1, Typed(-1, GGUFValueType.INT32),
    Typed(2**40, GGUFValueType.UINT64), float("nan"), float("inf"), -1.0, 1e-30, 1e30, 0.5,
    "linear", "", True, DROP, [1, 2],
)
# Templates that fail (quickly) in every way a chat template can; test_chat.py
# covers the slow ones (time and memory limits).
FUZZ_TEMPLATES = (
    "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
    "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
    "{{ 'x' * 3000000000 }}",
    "{{ raise_exception('no') }}",
    "{% for %}",
    "{{ messages[0]['content'] | upper }}",
    "{{ messages.__class__.__mro__ }}",
    "{{ messages[7]['content'] }}",
    "",
    "<|im_start|>{{ bos_token }}{{ eos_token }}<|im_end|>",
    "{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}",
)
_WEIRD_TOKENS = ("", " ", "<|im_end|>", "\x00", "\ud7ff" * 3, "Ġ" * 300, "a b", "\ufffd")


def random_recipe(rng) -> dict[str, Any]:
    """write_tiny_gguf arguments for a valid-structure mutant: a fuzz seed's
    configuration with 1-2 mutations of values, arrays, types or shapes."""
    name = rng.choice(sorted(FUZZ_SEED_CONFIGS))
    recipe = dict(FUZZ_SEED_CONFIGS[name], metadata={}, tensor_types={}, tensor_shapes={})
    mutations, weights = zip(*_RECIPE_MUTATIONS)
    for mutation in rng.choices(mutations, weights, k=rng.randint(1, 2)):
        mutation(recipe, rng)
    return recipe


def _vocab_of(recipe) -> TinyVocab:
    return build_vocab(recipe["arch"], recipe.get("n_vocab"))


def _mut_dims(recipe, rng):
    """Consistent dimensions (tensors follow them), some of them odd."""
    key, values = rng.choice((
        ("n_head", (1, 2, 3, 4, 8, 16, 32, 64)), ("n_head_kv", (1, 2, 3, 4, 8)),
        ("n_layer", (1, 2, 3)), ("n_ctx_train", (1, 2, 3, 16, 2**24)),
        ("sliding_window", (1, 2, 15, 16, 4096)), ("rms_eps", (1e-12, 0.1)),
        ("rope_base", (1.0, 1e12)), ("std", (1e-6, 1.0, 100.0, 60000.0)),
        ("qkv_bias", (True, False)), ("tied_output", (True, False)),
        ("n_vocab", (None, 400, 1000)), ("norm_type", (Q.F32, Q.F16, Q.BF16)),
    ))
    recipe[key] = rng.choice(values)


def _mut_hparam(recipe, rng):
    """A hyperparameter key the tensors do not follow, of any value or type."""
    recipe["metadata"][f"{recipe['arch']}.{rng.choice(_HPARAM_KEYS)}"] = rng.choice(_ODD_VALUES)


def _mut_tokens(recipe, rng):
    tokens = list(_vocab_of(recipe).tokens)
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(len(tokens))
        tokens[i] = rng.choice(_WEIRD_TOKENS + (tokens[rng.randrange(len(tokens))],))
    recipe["metadata"]["tokenizer.ggml.tokens"] = tokens


def _mut_token_types(recipe, rng):
    types = list(_vocab_of(recipe).token_types)
    for _ in range(rng.randint(1, 8)):
        types[rng.randrange(len(types))] = rng.choice((0, 1, 2, 3, 4, 5, 6, 7, 255))
    recipe["metadata"]["tokenizer.ggml.token_type"] = Typed(types, GGUFValueType.ARRAY, GGUFValueType.INT32)


def _mut_merges(recipe, rng):
    vocab = _vocab_of(recipe)
    merges = list(vocab.merges)
    kind = rng.randrange(5)
    if kind == 0:
        merges.append(f"{rng.choice(vocab.tokens)} {rng.choice(vocab.tokens)}")
    elif kind == 1:
        merges.append(rng.choice(("nosep", " x", "x ", "a  b", "zz qq")))
    elif kind == 2:
        merges = merges[::-1] + merges
    elif kind == 3:
        merges = []
    else:
        merges.insert(0, rng.choice(merges) if merges else "a b")
    recipe["metadata"]["tokenizer.ggml.merges"] = merges


def _mut_tokenizer_keys(recipe, rng):
    n = len(_vocab_of(recipe).tokens)
    key = rng.choice(("pre", "model", "bos_token_id", "eos_token_id", "eot_token_id",
                      "padding_token_id", "add_bos_token", "fim_pre_token_id"))
    value = {
        "pre": ("qwen2", "llama3", "default", "gpt-2", "klingon", "", 7),
        "model": ("gpt2", "llama", "bert", ""),
        "add_bos_token": (True, False, 1, "yes"),
    }.get(key, (0, 1, n - 1, n, 2**32 - 1, Typed(-1, GGUFValueType.INT32), "x"))
    recipe["metadata"][f"tokenizer.ggml.{key}"] = rng.choice(value)


def _mut_template(recipe, rng):
    recipe["metadata"]["tokenizer.chat_template"] = rng.choice(FUZZ_TEMPLATES + (DROP, 42))


def _tensor_names(recipe) -> list[str]:
    names = ["token_embd.weight", "output_norm.weight", "output.weight"]
    for i in range(recipe.get("n_layer", 2)):
        names += [f"blk.{i}.{t}.weight" for t in ("attn_norm", "attn_q", "attn_k", "attn_v",
                                                  "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down")]
    return names


def _mut_tensor_type(recipe, rng):
    recipe["tensor_types"][rng.choice(_tensor_names(recipe))] = rng.choice(
        (Q.F32, Q.F16, Q.BF16, Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q4_K, Q.Q6_K, Q.Q2_K))


def _mut_tensor_shape(recipe, rng):
    n_embd, n_ff = default_dims(recipe["weight_type"], recipe.get("embd_type"))
    d = rng.choice((1, 2, 32, 256, n_embd, n_ff, n_embd + 32, 2 * n_embd))
    recipe["tensor_shapes"][rng.choice(_tensor_names(recipe))] = rng.choice(((d,), (d, n_embd), (n_embd, d)))


def _mut_tensor_set(recipe, rng):
    if rng.random() < 0.5:
        recipe["drop_tensors"] = [rng.choice(_tensor_names(recipe))]
    else:
        recipe["extra_tensors"] = {rng.choice(("rope_freqs.weight", "output.bias", "blk.0.x.weight")):
                                   np.zeros(32, dtype=np.float32)}


# Weighted towards mutations that keep the file loadable, so most cases get
# past validation; the others test the validation itself.
_RECIPE_MUTATIONS = (
    (_mut_dims, 8), (_mut_tokens, 1), (_mut_token_types, 1), (_mut_merges, 1),
    (_mut_tokenizer_keys, 2), (_mut_template, 4), (_mut_hparam, 1), (_mut_tensor_type, 1),
    (_mut_tensor_shape, 1), (_mut_tensor_set, 1),
)


def flip_tensor_data(data: bytes, data_start: int, rng) -> bytes:
    """Random bytes in the tensor data (the structure stays valid): weights
    become NaN, inf or huge."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 64)):
        i = rng.randrange(data_start, len(buf))
        buf[i] = rng.choice((0xFF, 0x7F, 0x7C, 0x00, rng.randrange(256)))
    return bytes(buf)


def check_loaded(mf) -> None:
    """Invariants a successfully loaded model must satisfy (else: a loader bug)."""
    hp = mf.hparams
    mats = [mf.tok_embd, mf.output]
    vecs = [mf.output_norm]
    for layer in mf.layers:
        mats += [layer.wq, layer.wk, layer.wv, layer.wo, layer.w_gate, layer.w_up, layer.w_down]
        optional = (layer.bq, layer.bk, layer.bv, layer.q_norm, layer.k_norm, layer.post_attn_norm,
                    layer.post_ffn_norm)
        vecs += [layer.attn_norm, layer.ffn_norm] + [v for v in optional if v is not None]
    assert len(mf.layers) == hp.n_layer and len(mf.tokenizer.tokens) == hp.n_vocab
    assert hp.head_dim % 2 == 0 and hp.n_head % hp.n_head_kv == 0
    for m in mats:
        block, tsize = GGML_QUANT_SIZES[Q(m.type)]
        assert m.data.dtype == np.uint8 and m.data.flags.c_contiguous
        assert m.data.shape == (m.rows, m.cols // block * tsize) and m.cols % block == 0
        int(m.data[-1, -1])  # the last byte is really mapped
    for v in vecs:
        assert v.dtype == np.float32 and v.ndim == 1
        float(v[-1])
