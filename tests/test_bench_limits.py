"""bench/machine_limits.py: the work per token that engine.py divides the
machine's limits by, checked against the GGUF file itself.

A decode step reads every tensor of a tied-output model once (the
embedding matrix is the output head), plus the KV cache at its depth; the
fractions of read bandwidth engine.py reports are only as right as this
count. The limits themselves are measured, and a measurement here only has
to come back positive and named.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from gguf import GGUFReader

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import machine_limits  # noqa: E402
from ditto.engine.gguf_model import load_model_file  # noqa: E402


def test_decode_bytes_of_a_tied_model_are_every_tensor_once(default_model_path):
    model = load_model_file(default_model_path)
    assert model.tied_output
    in_file = sum(int(t.n_bytes) for t in GGUFReader(default_model_path).tensors)
    assert machine_limits.decode_bytes_per_token(model, 0, 4) == in_file


def test_decode_bytes_grow_by_the_kv_cache_read_at_depth(default_model_path):
    model = load_model_file(default_model_path)
    hp = model.hparams
    for depth, size in ((1, 4), (2048, 4), (2048, 2)):
        kv = 2 * hp.n_layer * hp.n_head_kv * hp.head_dim * depth * size
        assert (machine_limits.decode_bytes_per_token(model, depth, size)
                == machine_limits.decode_bytes_per_token(model, 0, size) + kv)


def test_prefill_flops_count_two_per_weight_and_the_attention(tiny_model_path):
    model = load_model_file(tiny_model_path())
    hp = model.hparams
    weights = sum(w.data.shape[0] * w.cols for layer in model.layers
                  for w in (layer.wq, layer.wk, layer.wv, layer.wo, layer.w_gate, layer.w_up, layer.w_down))
    n = 8
    attention = hp.n_layer * hp.n_head * 4 * hp.head_dim * np.arange(1, n + 1).sum()  # position t sees t + 1 keys
    head = 2 * model.output.rows * model.output.cols
    assert machine_limits.prefill_flops_per_token(model, n) * n == 2 * weights * n + attention + head


def test_limits_are_measured_on_the_threads_asked():
    limits = machine_limits.measure_here(threads=2, mb=8, reps=1)
    assert limits["threads"] == 2
    assert limits["read_gbps"] > 0 and limits["fma_peak_gflops"] > 0
    assert "2 concurrent parts" in limits["read_method"]
