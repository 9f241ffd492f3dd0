"""The machine's limits for one engine run, and a model's work per token.

    python bench/machine_limits.py [--threads 2] [--mb 512]

prints, as JSON, what this machine does at most on `threads` threads,
measured now (the machines are shared: measure in the same run as the
engines and compare within it):

  * read bandwidth: numpy sums over a --mb MB float32 array, split in one
    part per thread, summed concurrently (numpy releases the GIL there);
    best of a few repetitions, GB/s;
  * FMA peak: a float32 GEMM (numpy's BLAS, 2048 x 2048, its threads set to
    `threads` through the usual environment variables before numpy loads);
    a practical peak of these cores, not the datasheet's, FLOP/s.

engine.py divides by them: decode tok/s x bytes read per token / read
bandwidth, and prefill FLOP/s / FMA peak.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

GEMM_N = 2048


def _best_seconds(fn, reps: int) -> float:
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def measure_here(threads: int, mb: int, reps: int = 5) -> dict:
    """Measures in this process (numpy's BLAS threads must be set already)."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    data = np.ones((mb << 20) // 4, dtype=np.float32)
    parts = np.array_split(data, threads)
    with ThreadPoolExecutor(threads) as pool:
        read_s = _best_seconds(lambda: list(pool.map(np.sum, parts)), reps)
    a = np.ones((GEMM_N, GEMM_N), dtype=np.float32)
    a @ a  # BLAS threads start
    gemm_s = _best_seconds(lambda: a @ a, reps)
    return {
        "threads": threads,
        "read_gbps": data.nbytes / read_s / 1e9,
        "fma_peak_gflops": 2 * GEMM_N**3 / gemm_s / 1e9,
        "read_method": f"numpy sum over {mb} MB float32 in {threads} concurrent parts, best of {reps}",
        "fma_method": f"numpy float32 GEMM {GEMM_N}x{GEMM_N} (BLAS, {threads} threads), best of {reps}",
    }


def measure(threads: int, mb: int = 512) -> dict:
    """Measures in a fresh process, so numpy's BLAS uses exactly `threads`."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    res = subprocess.run([sys.executable, __file__, "--threads", str(threads), "--mb", str(mb)],
                         capture_output=True, text=True, env=env, timeout=600)
    if res.returncode != 0:
        raise RuntimeError(f"machine_limits failed ({res.returncode}):\n{res.stderr[-2000:]}")
    return json.loads(res.stdout)


def decode_bytes_per_token(model, depth: int, kv_bytes_per_value: int) -> int:
    """Bytes one decode step reads at context `depth`: every weight matrix
    and norm once, the output head (the embedding matrix when tied; an
    untied embedding is one row, left out), and every key and value of the
    context (kv_bytes_per_value: 4 for an f32 cache, 2 for f16)."""
    hp = model.hparams
    weights = model.output.data.nbytes + model.output_norm.nbytes
    for layer in model.layers:
        for w in (layer.wq, layer.wk, layer.wv, layer.wo, layer.w_gate, layer.w_up, layer.w_down):
            weights += w.data.nbytes
        weights += layer.attn_norm.nbytes + layer.ffn_norm.nbytes
    kv = 2 * hp.n_layer * hp.n_head_kv * hp.head_dim * depth * kv_bytes_per_value
    return weights + kv


def prefill_flops_per_token(model, n_tok: int) -> float:
    """FLOPs per token of one n_tok-token prefill from an empty context that
    wants the last token's logits: 2 per weight of the layer matrices, the
    attention's q.k and p.v (2 x 2 x head_dim per head and position, over
    (n_tok + 1) / 2 positions on average), the output head once per batch."""
    hp = model.hparams
    matrix = sum(w.rows * w.cols for layer in model.layers
                 for w in (layer.wq, layer.wk, layer.wv, layer.wo, layer.w_gate, layer.w_up, layer.w_down))
    attention = hp.n_layer * hp.n_head * 4 * hp.head_dim * (n_tok + 1) / 2
    head = model.output.rows * model.output.cols
    return 2 * matrix + attention + 2 * head / n_tok


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--mb", type=int, default=512, help="size of the array the bandwidth is read from")
    args = ap.parse_args()
    if args.threads < 1 or args.mb < 1:
        raise SystemExit("--threads and --mb must be positive")
    print(json.dumps(measure_here(args.threads, args.mb)))


if __name__ == "__main__":
    main()
