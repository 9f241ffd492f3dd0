"""The correctness oracle: an exact float64 forward pass in numpy.

Weights are dequantized once with ``gguf.quants.dequantize`` (the file's
own block formats, independent of ditto's C kernels) and held as float64;
every activation is float64.  Supports the ``llama`` (adjacent-pair rope),
``qwen2`` (q/k/v biases, NeoX rope), ``qwen3`` (per-head q/k RMSNorm),
``gemma3`` (embeddings times sqrt(n_embd), per-head q/k RMSNorm, RMSNorm
on each branch's output, GELU(tanh)-gated FFN, sliding layers with their
own rope base) and ``phi3`` (fused gate/up) architectures, fused
``attn_qkv`` tensors (split here from the file's own tensor, not from the
loader's views), grouped-query attention with a causal mask and a sliding
window in the layers that slide. Written from llama.cpp's graphs
(src/models/*.cpp), not from ditto's C.

    ref = ReferenceModel(load_model_file(path))
    ref.logits(tokens)           # (n, n_vocab) float64, teacher-forced
    ref.greedy(prompt, n_new)    # greedy continuation with a KV cache

Kept deliberately plain: clarity over speed (apart from the KV cache).
"""
from __future__ import annotations

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize


def _f64(w) -> np.ndarray:
    """A WeightMatrix (rows = out, cols = in) as a float64 (rows, cols) array."""
    m = np.asarray(dequantize(w.data, w.type), dtype=np.float64)
    return m.reshape(w.rows, w.cols)


def _file_f64(t) -> np.ndarray:
    """A gguf.GGUFReader tensor as float64 (rows, cols) (or (n,))."""
    cols = int(t.shape[0])
    return np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float64).reshape(-1, cols).squeeze()


def _split_rows(m: np.ndarray, *rows: int) -> list[np.ndarray]:
    return np.split(m, np.cumsum(rows)[:-1])


def rms_norm(x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def rope(x: np.ndarray, pos: np.ndarray, base: float, neox: bool) -> np.ndarray:
    """x: (n, heads, head_dim), pos: (n,). Rotates pairs by pos * theta_i,
    theta_i = base^(-2i/head_dim). Pairs are (x[2i], x[2i+1]) for llama and
    (x[i], x[i + head_dim/2]) for NeoX (qwen2)."""
    hd = x.shape[-1]
    theta = base ** (-2.0 * np.arange(hd // 2, dtype=np.float64) / hd)
    ang = pos.astype(np.float64)[:, None, None] * theta[None, None, :]   # (n, 1, hd/2)
    cos, sin = np.cos(ang), np.sin(ang)
    if neox:
        a, b = x[..., : hd // 2], x[..., hd // 2:]
    else:
        a, b = x[..., 0::2], x[..., 1::2]
    ra, rb = a * cos - b * sin, a * sin + b * cos
    out = np.empty_like(x)
    if neox:
        out[..., : hd // 2], out[..., hd // 2:] = ra, rb
    else:
        out[..., 0::2], out[..., 1::2] = ra, rb
    return out


def silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


def gelu_tanh(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))


def _vec(v) -> np.ndarray | None:
    return None if v is None else np.asarray(v, dtype=np.float64)


class _Layer:
    def __init__(self, lw, fused: dict):
        """`fused`: this layer's fused tensors from the file (attn_qkv.weight,
        attn_qkv.bias, ffn_up.weight of 2 * n_ff rows), by short name."""
        self.attn_norm = np.asarray(lw.attn_norm, dtype=np.float64)
        self.ffn_norm = np.asarray(lw.ffn_norm, dtype=np.float64)
        q_kv = (lw.wq.rows, lw.wk.rows, lw.wv.rows)
        if "attn_qkv.weight" in fused:
            self.wq, self.wk, self.wv = _split_rows(_file_f64(fused["attn_qkv.weight"]), *q_kv)
        else:
            self.wq, self.wk, self.wv = _f64(lw.wq), _f64(lw.wk), _f64(lw.wv)
        self.wo = _f64(lw.wo)
        if "ffn_up.weight" in fused:  # llama.cpp's swiglu: silu(first half) * second half
            self.w_gate, self.w_up = _split_rows(_file_f64(fused["ffn_up.weight"]), lw.w_up.rows, lw.w_up.rows)
        else:
            self.w_gate, self.w_up = _f64(lw.w_gate), _f64(lw.w_up)
        self.w_down = _f64(lw.w_down)
        z = lambda b, n: np.zeros(n) if b is None else np.asarray(b, dtype=np.float64)
        if "attn_qkv.bias" in fused:
            self.bq, self.bk, self.bv = _split_rows(_file_f64(fused["attn_qkv.bias"]), *q_kv)
        else:
            self.bq, self.bk, self.bv = z(lw.bq, lw.wq.rows), z(lw.bk, lw.wk.rows), z(lw.bv, lw.wv.rows)
        self.q_norm, self.k_norm = _vec(lw.q_norm), _vec(lw.k_norm)
        self.post_attn_norm, self.post_ffn_norm = _vec(lw.post_attn_norm), _vec(lw.post_ffn_norm)


class KVCache:
    """Per layer: keys (after rope) and values, (n_past, n_head_kv, head_dim)."""

    def __init__(self, n_layer: int):
        self.k = [None] * n_layer
        self.v = [None] * n_layer
        self.n = 0


class ReferenceModel:
    def __init__(self, model_file, kv_dtype=None):
        """kv_dtype: keys and values are rounded through it (e.g. np.float16,
        as an f16 KV cache stores them) before attention; None: exact."""
        self.mf = model_file
        self.hp = model_file.hparams
        self.kv_dtype = kv_dtype
        self._layers: list[_Layer] | None = None
        self._file: dict | None = None   # the file's tensors by name (gguf.GGUFReader)

    def _load(self) -> None:
        if self._layers is None:
            mf = self.mf
            self.tok_embd = _f64(mf.tok_embd)
            tied = mf.output is mf.tok_embd or mf.output.name == mf.tok_embd.name
            self.output = self.tok_embd if tied else _f64(mf.output)
            self.output_norm = np.asarray(mf.output_norm, dtype=np.float64)
            self._layers = [_Layer(lw, self._fused(i)) for i, lw in enumerate(mf.layers)]

    def _fused(self, layer: int) -> dict:
        names = ["attn_qkv.weight", "attn_qkv.bias"]
        if self.hp.architecture.fused_gate_up:
            names.append("ffn_up.weight")
        if self._file is None:
            self._file = {t.name: t for t in GGUFReader(self.mf.path).tensors}
        return {n: self._file[f"blk.{layer}.{n}"] for n in names if f"blk.{layer}.{n}" in self._file}

    # -- the forward pass ---------------------------------------------------
    def forward(self, tokens, cache: KVCache) -> np.ndarray:
        """Evaluates `tokens` at positions cache.n, cache.n + 1, ... appending
        to the cache; returns their (n, n_vocab) float64 logits."""
        self._load()
        hp = self.hp
        tokens = np.asarray(tokens, dtype=np.int64)
        n, hd = len(tokens), hp.head_dim
        pos = np.arange(cache.n, cache.n + n)
        group = hp.n_head // hp.n_head_kv
        arch = hp.architecture
        x = self.tok_embd[tokens]                                  # (n, n_embd)
        if arch.embd_scale_sqrt:
            x = x * np.sqrt(hp.n_embd)
        act = gelu_tanh if arch.activation == "gelu_tanh" else silu
        for il, L in enumerate(self._layers):
            slides = hp.layer_slides(il)
            base = hp.rope_base_swa if slides and hp.rope_base_swa else hp.rope_base
            h = rms_norm(x, L.attn_norm, hp.rms_eps)
            q = (h @ L.wq.T + L.bq).reshape(n, hp.n_head, hd)
            k = (h @ L.wk.T + L.bk).reshape(n, hp.n_head_kv, hd)
            v = (h @ L.wv.T + L.bv).reshape(n, hp.n_head_kv, hd)
            if L.q_norm is not None:
                q, k = rms_norm(q, L.q_norm, hp.rms_eps), rms_norm(k, L.k_norm, hp.rms_eps)
            q = rope(q, pos, base, hp.rope_neox)
            k = rope(k, pos, base, hp.rope_neox)
            if self.kv_dtype is not None:
                k, v = (a.astype(np.float32).astype(self.kv_dtype).astype(np.float64) for a in (k, v))
            if cache.k[il] is not None:
                k = np.concatenate([cache.k[il], k])
                v = np.concatenate([cache.v[il], v])
            cache.k[il], cache.v[il] = k, v
            kpos = np.arange(len(k))                               # all keys, (n_past + n)
            visible = kpos[None, :] <= pos[:, None]                # causal
            if slides:
                visible &= kpos[None, :] > pos[:, None] - hp.sliding_window
            kh = np.repeat(k, group, axis=1)                       # (n_kv_tot, n_head, hd)
            vh = np.repeat(v, group, axis=1)
            s = np.einsum("qhd,khd->hqk", q, kh) * arch.attention_scale(hd)  # (n_head, n, n_kv_tot)
            s = np.where(visible[None], s, -np.inf)
            s = np.exp(s - s.max(axis=-1, keepdims=True))
            p = s / s.sum(axis=-1, keepdims=True)
            att = np.einsum("hqk,khd->qhd", p, vh).reshape(n, hp.n_head * hd)
            x = x + self._post_norm(att @ L.wo.T, L.post_attn_norm)
            h = rms_norm(x, L.ffn_norm, hp.rms_eps)
            x = x + self._post_norm((act(h @ L.w_gate.T) * (h @ L.w_up.T)) @ L.w_down.T, L.post_ffn_norm)
        cache.n += n
        return rms_norm(x, self.output_norm, hp.rms_eps) @ self.output.T

    def _post_norm(self, y: np.ndarray, w: np.ndarray | None) -> np.ndarray:
        return y if w is None else rms_norm(y, w, self.hp.rms_eps)

    def new_cache(self) -> KVCache:
        return KVCache(self.hp.n_layer)

    # -- public API ---------------------------------------------------------
    def logits(self, tokens) -> np.ndarray:
        """Teacher-forced logits of a whole sequence from position 0: (n, n_vocab)."""
        return self.forward(tokens, self.new_cache())

    def greedy(self, prompt_tokens, n_new: int, stop=()) -> list[int]:
        """Greedy continuation (argmax, lowest id on exact ties) of n_new tokens,
        stopping early after a token in `stop`."""
        cache = self.new_cache()
        out: list[int] = []
        last = self.forward(prompt_tokens, cache)[-1]
        while len(out) < n_new:
            t = int(np.argmax(last))
            out.append(t)
            if t in stop or len(out) == n_new:
                break
            last = self.forward([t], cache)[-1]
        return out
