# cython: language_level=3, boundscheck=False, wraparound=False
"""Model and Context: the native forward pass behind a small Python API.

Arguments are validated here, in Python terms; C is then called with the GIL
released, so a language server's event loop keeps running during a decode.
"""
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING
from libc.stdint cimport int32_t, int64_t, uint8_t
from libc.stdlib cimport calloc, free

import hashlib
import mmap
import os

import numpy as np

from ditto_c cimport *

# exact: f32 activations, the float64 reference's top token at every tested
# position; fast: int8 activations, q16: 16-bit activations, both with
# integer block sums on repacked weights (ditto.h).
PRECISIONS = {"exact": DT_PRECISION_EXACT, "fast": DT_PRECISION_FAST, "q16": DT_PRECISION_Q16}
# Element type of the KV cache: f16 halves its memory and the bytes attention
# reads per step (keys and values rounded to half once, when stored).
KV_TYPES = {"f32": DT_F32, "f16": DT_F16, "bf16": DT_BF16}

_ERRORS = {
    DT_ERR_INVALID: (ValueError, "invalid argument"),
    DT_ERR_NOMEM: (MemoryError, "out of memory"),
    DT_ERR_UNSUPPORTED: (NotImplementedError, "unsupported tensor type or shape"),
    DT_ERR_CAPACITY: (OverflowError, "context or batch capacity exceeded"),
    DT_ERR_STATE: (ValueError, "saved state does not match this model or is corrupted"),
    DT_ERR_EVICTED: (ValueError, "the ring KV cache no longer holds positions this needs"),
}


cdef int check(int rc, str what) except -1:
    if rc >= 0:
        return 0
    exc, text = _ERRORS.get(rc, (RuntimeError, f"error {rc}"))
    raise exc(f"{what}: {text}")


def physical_cores():
    """One thread per physical core (the default thread count)."""
    try:
        cores = set()
        with open("/proc/cpuinfo") as f:
            phys = core = None
            for line in f:
                if line.startswith("physical id"):
                    phys = line.split(":")[1].strip()
                elif line.startswith("core id"):
                    core = line.split(":")[1].strip()
                elif not line.strip():
                    if core is not None:
                        cores.add((phys, core))
                    phys = core = None
        n = len(cores)
    except OSError:
        n = 0
    avail = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(n or avail, avail))


def model_identity(model_file):
    """64 bits naming the model file: its header hash plus samples of the
    weights (the header alone is the same for same-shaped models), so a
    saved state is refused by any other model, even one with the same
    dimensions."""
    h = hashlib.sha256(model_file.sha256_prefix.encode())
    h.update(np.ascontiguousarray(model_file.output_norm).tobytes())
    # (this module is compiled without wraparound: no negative indices)
    last_layer = model_file.layers[len(model_file.layers) - 1]
    for w in (model_file.tok_embd, model_file.output, model_file.layers[0].wq, last_layer.w_down):
        h.update(np.asarray(w.data[0]).tobytes())
        h.update(np.asarray(w.data[w.rows - 1]).tobytes())
    return int.from_bytes(h.digest()[:8], "little")


def on_file_mapping(a):
    """True if array `a` lies on a memory-mapped file (an mmap.mmap, as the
    GGUF loader maps models; np.frombuffer views it through a memoryview)."""
    owner = a
    while isinstance(owner, np.ndarray):
        owner = owner.base
    if isinstance(owner, memoryview):
        owner = owner.obj
    return isinstance(owner, mmap.mmap)


ctypedef int (*state_reader)(dt_context *ctx, int seq, const void *buf, int64_t len) noexcept nogil


cdef dt_tensor as_tensor(w) except *:
    cdef const uint8_t[:, ::1] data = w.data
    cdef dt_tensor t
    t.data = &data[0, 0]
    t.type = w.type
    t.rows = w.rows
    t.cols = w.cols
    t.q16 = NULL
    return t


cdef const float *vec_ptr(a) except? NULL:
    if a is None:
        return NULL
    cdef const float[::1] v = a
    return &v[0]


cdef class Model:
    """The model's weights, memory-mapped, as the native layer sees them."""
    cdef dt_model m
    cdef dt_layer *layers
    cdef readonly object file
    cdef object _keep

    def __cinit__(self, model_file):
        hp = model_file.hparams
        arch = hp.architecture  # the loader's table entry: flags, not a name, reach C
        self.file = model_file
        self._keep = []
        self.layers = <dt_layer *>calloc(hp.n_layer, sizeof(dt_layer))
        if self.layers == NULL:
            raise MemoryError()
        self.m.id = model_identity(model_file)
        self.m.flags = arch.native_flags
        self.m.n_vocab = hp.n_vocab
        self.m.n_embd = hp.n_embd
        self.m.n_layer = hp.n_layer
        self.m.n_head = hp.n_head
        self.m.n_head_kv = hp.n_head_kv
        self.m.head_dim = hp.head_dim
        self.m.n_ff = hp.n_ff
        self.m.n_ctx_train = hp.n_ctx_train
        self.m.sliding_window = hp.sliding_window
        self.m.rms_eps = hp.rms_eps
        self.m.rope_base = hp.rope_base
        self.m.rope_base_swa = hp.rope_base_swa
        self.m.embd_scale = arch.embd_scale(hp.n_embd)
        self.m.attn_scale = arch.attention_scale(hp.head_dim)
        self.m.tok_embd = as_tensor(model_file.tok_embd)
        self.m.output = as_tensor(model_file.output)
        self.m.output_norm = vec_ptr(self._vec(model_file.output_norm))
        for i, lw in enumerate(model_file.layers):
            self.layers[i].attn_norm = vec_ptr(self._vec(lw.attn_norm))
            self.layers[i].ffn_norm = vec_ptr(self._vec(lw.ffn_norm))
            self.layers[i].wq = as_tensor(lw.wq)
            self.layers[i].wk = as_tensor(lw.wk)
            self.layers[i].wv = as_tensor(lw.wv)
            self.layers[i].wo = as_tensor(lw.wo)
            self.layers[i].w_gate = as_tensor(lw.w_gate)
            self.layers[i].w_up = as_tensor(lw.w_up)
            self.layers[i].w_down = as_tensor(lw.w_down)
            self.layers[i].bq = vec_ptr(self._vec(lw.bq))
            self.layers[i].bk = vec_ptr(self._vec(lw.bk))
            self.layers[i].bv = vec_ptr(self._vec(lw.bv))
            self.layers[i].q_norm = vec_ptr(self._vec(lw.q_norm))
            self.layers[i].k_norm = vec_ptr(self._vec(lw.k_norm))
            self.layers[i].post_attn_norm = vec_ptr(self._vec(lw.post_attn_norm))
            self.layers[i].post_ffn_norm = vec_ptr(self._vec(lw.post_ffn_norm))
            self.layers[i].slides = 1 if hp.layer_slides(i) else 0
        self.m.layers = self.layers
        check(dt_model_validate(&self.m), "model")

    def _vec(self, a):
        if a is None:
            return None
        a = np.ascontiguousarray(a, dtype=np.float32)
        self._keep.append(a)
        return a

    def prepare_q16(self, int n_threads):
        """Repacks the weight matrices for precisions q16 and fast (those already
        repacked are kept, so a second such context repacks nothing). The
        loader's read-only file mapping then gives each matrix's pages back as
        soon as it is repacked, so the weights are held once (exact contexts
        read them in again if they run)."""
        cdef int rc, drop = 1 if on_file_mapping(self.file.output.data) else 0
        with nogil:
            rc = dt_model_q16_prepare(&self.m, n_threads, drop)
        check(rc, "q16 repack")

    def __dealloc__(self):
        dt_model_q16_release(&self.m)
        free(self.layers)

    @property
    def n_vocab(self):
        return self.m.n_vocab

    @property
    def hparams(self):
        return self.file.hparams


cdef class Context:
    """KV cache for `n_seq` sequences of up to `n_ctx` positions each.

    kv_ring (sliding-window models only): True, or a number of slots (at
    least the window; rounded up to 16), keeps only the last ring_slots
    positions of each sequence in the sliding layers (global-attention
    layers keep every position): True means the window plus DT_RING_SLACK - 1.
    A ring sequence cannot always be truncated (can_truncate); checkpoint()
    before a pass and restore() after it undo the pass instead.

    kv_type: "f32" or "f16", the element type of the KV cache (KV_TYPES).
    """
    cdef dt_context *ctx
    cdef readonly Model model
    cdef readonly int n_seq, n_ctx, max_batch, n_threads
    cdef readonly str precision, kv_type
    cdef readonly bint kv_ring

    def __cinit__(self, Model model, int n_seq=1, int n_ctx=4096, int max_batch=512, n_threads=None,
                  str precision="exact", kv_ring=False, str kv_type="f32"):
        if n_seq < 1 or n_ctx < 1 or max_batch < 1:
            raise ValueError("n_seq, n_ctx and max_batch must be positive")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
        if kv_type not in KV_TYPES:
            raise ValueError(f"kv_type must be one of {', '.join(KV_TYPES)}, not {kv_type!r}")
        threads = physical_cores() if n_threads is None else int(n_threads)
        if threads < 1:
            raise ValueError("n_threads must be positive")
        self.model = model
        self.n_seq, self.n_ctx, self.max_batch, self.n_threads = n_seq, n_ctx, max_batch, threads
        cdef int window = model.m.sliding_window
        cdef int slots = 0
        if kv_ring is True:
            slots = window + DT_RING_SLACK - 1
        elif kv_ring is not False and kv_ring is not None:
            slots = int(kv_ring)
            if slots < 1:
                raise ValueError("kv_ring must be True, False or a positive number of slots")
        if slots and window <= 0:
            raise ValueError("kv_ring needs a sliding-window model")
        self.kv_ring = slots > 0
        cdef dt_context_params params
        params.n_seq, params.n_ctx, params.max_batch, params.n_threads = n_seq, n_ctx, max_batch, threads
        params.ring_slots = slots
        params.kv_type = KV_TYPES[kv_type]
        cdef int rc
        if precision in ("q16", "fast"):   # both run on the repacked tiles
            model.prepare_q16(threads)
        with nogil:
            rc = dt_context_new_params(&model.m, &params, &self.ctx)
        check(rc, "context")
        check(dt_context_set_precision(self.ctx, PRECISIONS[precision]), "precision")
        self.precision = precision
        self.kv_type = kv_type

    def __dealloc__(self):
        if self.ctx != NULL:
            dt_context_free(self.ctx)

    def _check_seq(self, int seq):
        if not 0 <= seq < self.n_seq:
            raise IndexError(f"sequence {seq} out of range [0, {self.n_seq})")

    def seq_len(self, int seq):
        self._check_seq(seq)
        return dt_seq_len(self.ctx, seq)

    @property
    def kv_bytes(self):
        """Bytes of keys and values the context holds when every sequence is full."""
        return dt_context_kv_bytes(self.ctx)

    @property
    def ring_slots(self):
        """Positions a ring sequence keeps (0: full cache)."""
        return dt_context_ring_slots(self.ctx)

    def held_from(self, int seq):
        """First position whose keys and values the sequence still holds."""
        self._check_seq(seq)
        return dt_seq_held_from(self.ctx, seq)

    def can_truncate(self, int seq, int n_keep):
        """Whether truncate(seq, n_keep) is possible (always, without a ring)."""
        self._check_seq(seq)
        if n_keep < 0:
            raise ValueError("n_keep must be >= 0")
        return dt_seq_can_truncate(self.ctx, seq, n_keep) == 1

    def truncate(self, int seq, int n_keep):
        """Drops positions >= n_keep: restores the sequence to a checkpoint.
        A ring refuses (ValueError) when it no longer holds what n_keep needs."""
        self._check_seq(seq)
        if n_keep < 0:
            raise ValueError("n_keep must be >= 0")
        check(dt_seq_truncate(self.ctx, seq, n_keep), "truncate")

    def checkpoint(self, int seq, int n_next):
        """An opaque checkpoint of the sequence, good for undoing up to
        n_next more positions with restore(): its length and, in a ring,
        the slots those positions overwrite."""
        self._check_seq(seq)
        if n_next < 0:
            raise ValueError("n_next must be >= 0")
        cdef int64_t size = dt_seq_checkpoint_size(self.ctx, seq, n_next)
        check(<int>size if size < 0 else 0, "checkpoint")
        out = PyBytes_FromStringAndSize(NULL, size)
        cdef char *buf = PyBytes_AS_STRING(out)
        cdef int64_t written = 0
        cdef int rc
        with nogil:
            rc = dt_seq_checkpoint(self.ctx, seq, n_next, buf, size, &written)
        check(rc, "checkpoint")
        return out

    def restore(self, int seq, checkpoint):
        """Puts the sequence back exactly as it was at checkpoint()."""
        self._read_state(seq, checkpoint, dt_seq_restore, "restore")

    def copy(self, int src, int dst, n=None):
        self._check_seq(src)
        self._check_seq(dst)
        cdef int count = dt_seq_len(self.ctx, src) if n is None else n
        cdef int rc
        with nogil:
            rc = dt_seq_copy(self.ctx, src, dst, count)
        check(rc, "copy")

    def save(self, int seq):
        """The sequence's whole state as bytes (header + KV in the context's kv_type)."""
        self._check_seq(seq)
        cdef int64_t size = dt_seq_state_size(self.ctx, seq)
        check(<int>size if size < 0 else 0, "save")
        out = PyBytes_FromStringAndSize(NULL, size)
        cdef char *buf = PyBytes_AS_STRING(out)
        cdef int64_t written = 0
        cdef int rc
        with nogil:
            rc = dt_seq_state_save(self.ctx, seq, buf, size, &written)
        check(rc, "save")
        return out

    def load(self, int seq, data):
        """Restores a state written by save(); a foreign or corrupted state is refused."""
        self._read_state(seq, data, dt_seq_state_load, "load")

    cdef _read_state(self, int seq, data, state_reader reader, str what):
        """Hands bytes from save() or checkpoint() to the native reader."""
        self._check_seq(seq)
        cdef const uint8_t[::1] view = memoryview(data).cast("B")
        if view.shape[0] == 0:
            raise ValueError(f"{what}: empty state")
        cdef int rc
        with nogil:
            rc = reader(self.ctx, seq, &view[0], view.shape[0])
        check(rc, what)

    def decode(self, tokens, positions, seq_ids, want=None):
        """Evaluates a batch; returns float32 logits (count(want), n_vocab).

        Token i belongs to sequence seq_ids[i] at positions[i]; within a
        sequence, positions continue its current length in order. Batches
        larger than max_batch are evaluated in consecutive chunks.
        """
        tok = np.ascontiguousarray(tokens, dtype=np.int32).reshape(-1)
        pos = np.ascontiguousarray(positions, dtype=np.int32).reshape(-1)
        seq = np.ascontiguousarray(seq_ids, dtype=np.int32).reshape(-1)
        n = tok.shape[0]
        if want is None:
            wnt = np.zeros(n, dtype=np.uint8)
            if n:
                wnt[n - 1] = 1
        else:
            wnt = np.ascontiguousarray(want, dtype=np.uint8).reshape(-1)
        if pos.shape[0] != n or seq.shape[0] != n or wnt.shape[0] != n:
            raise ValueError("tokens, positions, seq_ids and want must have the same length")
        self._validate_batch(tok, pos, seq)
        n_want = int(np.count_nonzero(wnt))
        logits = np.empty((n_want, self.model.m.n_vocab), dtype=np.float32)
        cdef int start = 0, stop, rows_done = 0, chunk_want
        while start < n:
            stop = min(n, start + self.max_batch)
            chunk_want = int(np.count_nonzero(wnt[start:stop]))
            self._decode_chunk(tok[start:stop], pos[start:stop], seq[start:stop], wnt[start:stop],
                               logits[rows_done:rows_done + chunk_want])
            rows_done += chunk_want
            start = stop
        return logits

    def _validate_batch(self, tok, pos, seq):
        n_vocab = self.model.m.n_vocab
        if tok.size and (tok.min() < 0 or tok.max() >= n_vocab):
            raise ValueError(f"token id out of range [0, {n_vocab})")
        if seq.size and (seq.min() < 0 or seq.max() >= self.n_seq):
            raise IndexError(f"sequence id out of range [0, {self.n_seq})")
        for s in np.unique(seq):
            p = pos[seq == s]
            start = dt_seq_len(self.ctx, s)
            if not np.array_equal(p, np.arange(start, start + p.shape[0], dtype=np.int32)):
                raise ValueError(f"positions of sequence {s} must continue it at {start} in order")
            if start + p.shape[0] > self.n_ctx:
                raise OverflowError(f"sequence {s} would exceed the context of {self.n_ctx} positions")

    def _decode_chunk(self, const int32_t[::1] tok, const int32_t[::1] pos, const int32_t[::1] seq,
                      const uint8_t[::1] wnt, float[:, ::1] out):
        cdef int n = tok.shape[0]
        cdef float *logits = &out[0, 0] if out.shape[0] > 0 else NULL
        cdef int rc
        with nogil:
            rc = dt_decode(self.ctx, n, &tok[0], &pos[0], &seq[0], &wnt[0], logits)
        check(rc, "decode")
