"""Engine speed and memory: ditto against llama.cpp, in one run, as ratios.

    python bench/engine.py [--rounds 2] [--reps 3] [--threads 2] [--ctx 4096] [--kv-type auto [f32 f16 bf16]]
                           [--precision q16 [exact] [fast]]
                           [--llama-bin-dir DIR] [--model GGUF] [--out bench/results/]

Measures, on the same GGUF with the same thread count:

  * prefill: pp512, tokens/s of one 512-token batch from an empty context;
  * decode: tg128, tokens/s of 128 single-token steps from an empty context;
  * decode at 2k context: tg128 after a 2048-token prefill (depth 2048);
  * peak memory (RSS high-water mark) with a context of --ctx tokens,
    serving a 2048-token prompt and 128 generated tokens.

ditto runs in a subprocess of this script (`--worker`), once per --precision
and --kv-type (the matmuls' precision and the KV cache's element type; each
variant is named in the JSON, `ditto_exact_f16`, `ditto_fast_f32`, ..., with
its ratios to llama.cpp and, given both KV types, f16 / f32), so its peak
RSS is its own; the worker times the native Context directly (decode(tokens,
positions, seq_ids, want)), as llama-bench times llama_decode: no sampling,
real text tokens. llama.cpp runs as `llama-bench -fa 1 -t T -p 512 -n 128
-o json` and `llama-bench -fa 1 -t T -p 0 -n 128 -d 2048 -o json` (its
flash-attention path is its fastest on this CPU); its memory is llama-server's
peak RSS at `-c CTX -np 1 -fa on` on the same workload, which also gives a
second 2k-context decode figure. Each round alternates the engines (the
order flips every round) and ratios are formed within a round, because the
machine's speed drifts between runs; the summary is the median over rounds.
Within a round each engine's figure is the median of its --reps
repetitions (llama-bench's mean is kept beside it as *_avg_tps).

Each round also measures the machine's limits (machine_limits.py: read
bandwidth and a float32 GEMM's FMA peak on --threads threads) and reports
the fraction of them each engine reaches: decode tok/s x bytes read per
token / read bandwidth (weights, the output head and, at depth, the KV
cache: ditto's kv type, f16 in llama.cpp), and prefill FLOP/s / FMA peak.

JSON goes to stdout, progress to stderr.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import machine_limits  # noqa: E402
from common import log, mb, median, ratio, rnd  # noqa: E402


# ---- ditto worker (runs in its own process) --------------------------------------

def text_tokens(tokenizer, n: int) -> list[int]:
    """n tokens of real code: stdlib files concatenated."""
    out: list[int] = []
    for path in common.stdlib_files(4096, 65536):
        out += tokenizer.encode(path.read_text(encoding="utf-8"))
        if len(out) >= n:
            return out[:n]
    raise SystemExit("not enough standard-library text for the benchmark")


def worker(args) -> None:
    import numpy as np

    t0 = time.perf_counter()
    from ditto.engine.llm import LLM
    import_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    llm = LLM(args.model, n_ctx=args.ctx, n_seq=1, n_threads=args.threads, max_batch=512,
              precision=args.precision[0], kv_type=args.kv_type[0])
    load_seconds = time.perf_counter() - t0
    ctx = llm.ctx
    need = max(args.pp, args.depth) + args.tg
    if need > ctx.n_ctx:
        raise SystemExit(f"--ctx {ctx.n_ctx} is too small for depth {args.depth} + tg {args.tg}")
    toks = np.asarray(text_tokens(llm.tokenizer, need), dtype=np.int32)
    seq0 = np.zeros(need, dtype=np.int32)

    def batch(start: int, n: int):
        """Evaluates toks[start:start+n] at positions start.. ; logits of the last only."""
        want = np.zeros(n, dtype=np.uint8)
        want[-1] = 1
        return ctx.decode(toks[start:start + n], np.arange(start, start + n, dtype=np.int32),
                          seq0[:n], want)

    def prefill(n: int) -> float:
        ctx.truncate(0, 0)
        t = time.perf_counter()
        batch(0, n)
        return time.perf_counter() - t

    def generate(start: int, n: int) -> float:
        """n single-token steps from position `start`."""
        one = np.ones(1, dtype=np.uint8)
        t = time.perf_counter()
        for i in range(start, start + n):
            ctx.decode(toks[i:i + 1], np.array([i], dtype=np.int32), seq0[:1], one)
        return time.perf_counter() - t

    # warm-up: page the weights in, start the thread pool
    prefill(min(args.pp, 64))
    generate(ctx.seq_len(0), 8)

    pp, tg, tg_depth = [], [], []
    for _ in range(args.reps):
        pp.append(args.pp / prefill(args.pp))
    for _ in range(args.reps):
        ctx.truncate(0, 0)
        tg.append(args.tg / generate(0, args.tg))
    depth_prefill = None
    if args.depth:
        depth_prefill = prefill(args.depth)
        for _ in range(args.reps):
            if ctx.can_truncate(0, args.depth):
                ctx.truncate(0, args.depth)
            else:   # a ring (sliding-window models) no longer holds what that needs
                prefill(args.depth)
            tg_depth.append(args.tg / generate(args.depth, args.tg))
    print(json.dumps({
        "pp_tps": pp, "tg_tps": tg, "tg_depth_tps": tg_depth,
        "depth_prefill_tps": args.depth / depth_prefill if depth_prefill else None,
        "import_seconds": import_seconds, "load_seconds": load_seconds,
        "n_ctx": ctx.n_ctx, "n_threads": ctx.n_threads, "precision": ctx.precision, "kv_type": ctx.kv_type,
    }))


def run_ditto(args, model: Path, precision: str, kv_type: str) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--model", str(model),
           "--threads", str(args.threads), "--ctx", str(args.ctx), "--pp", str(args.pp),
           "--tg", str(args.tg), "--depth", str(args.depth), "--reps", str(args.reps), "--kv-type", kv_type,
           "--precision", precision]
    for attempt in range(3):
        res = common.run_measured(cmd, timeout=3600)
        if res["returncode"] == 0:
            break
        # an editable install rebuilds native code on import: a tree caught
        # mid-edit fails to build; wait and try again
        log(f"  ditto worker failed ({res['returncode']}), attempt {attempt + 1}/3:\n{res['stderr'][-1500:]}")
        time.sleep(30)
    else:
        raise RuntimeError(f"ditto worker failed ({res['returncode']}):\n{res['stderr'][-3000:]}")
    data = json.loads(res["stdout"].strip().splitlines()[-1])
    return {
        "pp_tps": rnd(median(data["pp_tps"])),
        "tg_tps": rnd(median(data["tg_tps"])),
        "tg_depth_tps": rnd(median(data["tg_depth_tps"])),
        "depth_prefill_tps": rnd(data["depth_prefill_tps"]),
        "samples": {k: [rnd(x) for x in data[k]] for k in ("pp_tps", "tg_tps", "tg_depth_tps")},
        "peak_rss_mb": mb(res["peak_rss_bytes"]),
        "n_ctx": data["n_ctx"],
        "precision": data["precision"],
        "kv_type": data["kv_type"],
        "load_seconds": rnd(data["load_seconds"], 3),
        "import_seconds": rnd(data["import_seconds"], 3),
    }


# ---- llama.cpp -----------------------------------------------------------------------

def bench_supports_depth(bin_dir: str) -> bool:
    res = subprocess.run([common.llama_binary(bin_dir, "llama-bench"), "--help"], capture_output=True,
                         text=True, env=common.llama_env(bin_dir), timeout=60)
    return "--n-depth" in res.stdout + res.stderr


def llama_bench(args, model: Path, *flags: str) -> tuple[list[dict], int | None]:
    cmd = [common.llama_binary(args.llama_bin_dir, "llama-bench"), "-m", str(model), "-t", str(args.threads),
           "-fa", "1", "-r", str(args.reps), "-o", "json", *flags]
    res = common.run_measured(cmd, env=common.llama_env(args.llama_bin_dir), timeout=3600)
    if res["returncode"] != 0:
        raise RuntimeError(f"llama-bench failed ({res['returncode']}): {' '.join(cmd)}\n{res['stderr'][-3000:]}")
    return json.loads(res["stdout"]), res["peak_rss_bytes"]


def summary(name: str, row: dict) -> dict:
    """A llama-bench row summarised as ditto's worker is: the median of its
    repetitions (llama-bench's own avg_ts and stddev_ts kept beside it)."""
    return {f"{name}_tps": rnd(median(row["samples_ts"])), f"{name}_avg_tps": rnd(row["avg_ts"]),
            f"{name}_stddev": rnd(row["stddev_ts"]), f"{name}_samples": [rnd(x) for x in row["samples_ts"]]}


def run_llama_bench(args, model: Path, depth_ok: bool) -> dict:
    rows, rss = llama_bench(args, model, "-p", str(args.pp), "-n", str(args.tg))
    out = {"peak_rss_mb_llama_bench": mb(rss)}
    for row in rows:
        if row.get("n_prompt") == args.pp and not row.get("n_gen"):
            out.update(summary("pp", row))
        elif row.get("n_gen") == args.tg and not row.get("n_prompt"):
            out.update(summary("tg", row))
        out["build"] = f"{row.get('build_commit')} ({row.get('build_number')})"
        out["cpu_info"] = row.get("cpu_info")
    if args.depth and depth_ok:
        rows, _ = llama_bench(args, model, "-p", "0", "-n", str(args.tg), "-d", str(args.depth))
        for row in rows:
            if row.get("n_gen") == args.tg and row.get("n_depth") == args.depth:
                out.update(summary("tg_depth", row))
    return out


def run_llama_server(args, model: Path, prompt: list[int]) -> dict:
    """Peak RSS of llama-server at -c CTX serving the 2k-context workload; its
    own prefill and decode speeds as a cross-check of llama-bench."""
    with common.LlamaServer(args.llama_bin_dir, model, threads=args.threads, ctx=args.ctx) as srv:
        res = srv.completion({"prompt": prompt, "n_predict": args.tg, "temperature": 0, "top_k": 1,
                              "ignore_eos": True, "cache_prompt": False, "seed": 1})
    t = res.get("timings", {})
    return {
        "peak_rss_mb": mb(srv.peak_rss_bytes),
        "n_ctx": args.ctx,
        "depth_prefill_tps": rnd(t.get("prompt_per_second")),
        "tg_depth_tps": rnd(t.get("predicted_per_second")),
        "predicted_n": t.get("predicted_n"),
        "startup_seconds": rnd(srv.startup_seconds, 3),
    }


def depth_prompt(model: Path, n: int) -> list[int]:
    """The 2k-context workload's prompt ids, from ditto's tokenizer (no model load)."""
    from ditto.engine.gguf_model import load_model_file
    from ditto.engine.tokenizer import Tokenizer
    tok = Tokenizer(load_model_file(model).tokenizer)
    return text_tokens(tok, n)


# ---- fraction of the machine's limits ---------------------------------------------------

def work_per_token(args, model: Path) -> dict:
    """Bytes a decode step reads (at depth 0 and --depth, per KV format) and
    FLOPs per prefill token, from the model's tensors."""
    from ditto.engine.gguf_model import load_model_file
    m = load_model_file(model)
    return {
        "decode_bytes": {kv: {"empty": machine_limits.decode_bytes_per_token(m, 0, size),
                              "at_depth": machine_limits.decode_bytes_per_token(m, args.depth, size)}
                         for kv, size in (("f32", 4), ("f16", 2), ("bf16", 2))},
        "prefill_flops": round(machine_limits.prefill_flops_per_token(m, args.pp)),
    }


def fractions(speeds: dict, tg_depth_tps: float | None, limits: dict, work: dict, kv: str) -> dict:
    """An engine's decode and prefill as fractions of the machine's limits."""
    bw, peak = limits["read_gbps"] * 1e9, limits["fma_peak_gflops"] * 1e9
    per_token = work["decode_bytes"][kv]

    def of(x, scale):
        return rnd(x * scale, 3) if x else None
    return {
        "tg_of_read_bandwidth": of(speeds.get("tg_tps"), per_token["empty"] / bw),
        "tg_at_depth_of_read_bandwidth": of(tg_depth_tps, per_token["at_depth"] / bw),
        "pp_of_fma_peak": of(speeds.get("pp_tps"), work["prefill_flops"] / peak),
    }


# ---- main ------------------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_args(ap)
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds (default: 2)")
    ap.add_argument("--reps", type=int, default=3, help="repetitions per measurement (default: 3)")
    ap.add_argument("--ctx", type=int, default=4096, help="context size for the memory comparison (default: 4096)")
    ap.add_argument("--pp", type=int, default=512)
    ap.add_argument("--tg", type=int, default=128)
    ap.add_argument("--depth", type=int, default=2048, help="context depth for the long decode (0: skip)")
    ap.add_argument("--no-server", action="store_true", help="skip the llama-server memory run")
    from ditto.engine.options import DEFAULT_KV_TYPE, DEFAULT_PRECISION, KV_TYPES, PRECISIONS
    ap.add_argument("--kv-type", nargs="+", choices=KV_TYPES, default=[DEFAULT_KV_TYPE],
                    help=f"ditto's KV cache element type(s), each measured in every round (default: {DEFAULT_KV_TYPE})")
    ap.add_argument("--precision", nargs="+", choices=PRECISIONS, default=[DEFAULT_PRECISION],
                    help=f"ditto's matmul precision(s), each measured in every round (default: {DEFAULT_PRECISION})")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    common.exit_on_sigterm()
    model = common.resolve_model(args.model)
    args.model = str(model)
    if args.worker:
        worker(args)
        return

    common.llama_binary(args.llama_bin_dir, "llama-bench")
    depth_ok = bench_supports_depth(args.llama_bin_dir)
    prompt = depth_prompt(model, args.depth) if args.depth and not args.no_server else None
    work = work_per_token(args, model)
    variants = [(p, kv) for p in args.precision for kv in args.kv_type]
    dittos = [f"ditto_{p}_{kv}" for p, kv in variants]
    rounds = []
    for r in range(args.rounds):
        entry = {"round": r + 1, "order": "ditto-first" if r % 2 == 0 else "llama-first"}
        steps = [("machine", lambda: machine_limits.measure(args.threads))]
        steps += [(name, lambda p=p, kv=kv: run_ditto(args, model, p, kv)) for name, (p, kv) in zip(dittos, variants)]
        steps.append(("llama_bench", lambda: run_llama_bench(args, model, depth_ok)))
        if prompt:
            steps.append(("llama_server", lambda: run_llama_server(args, model, prompt)))
        if r % 2:
            steps = steps[1:] + steps[:1]
        for name, fn in steps:
            log(f"round {r + 1}/{args.rounds}: {name} ...")
            t0 = time.perf_counter()
            entry[name] = fn()
            entry[name]["loadavg_1min_after"] = round(os.getloadavg()[0], 2)
            log(f"  {name} done in {time.perf_counter() - t0:.1f}s: "
                f"{json.dumps({k: v for k, v in entry[name].items() if k != 'samples'})}")
        lb, ls = entry["llama_bench"], entry.get("llama_server", {})
        llama_depth = lb.get("tg_depth_tps") or ls.get("tg_depth_tps")
        entry["ratios"] = {}
        entry["fraction_of_machine"] = {"llama_cpp": fractions(lb, llama_depth, entry["machine"], work, kv="f16")}
        for name in dittos:
            d = entry[name]
            entry["ratios"][name] = {
                "pp": ratio(d["pp_tps"], lb.get("pp_tps")),
                "tg": ratio(d["tg_tps"], lb.get("tg_tps")),
                "tg_at_depth": ratio(d["tg_depth_tps"], llama_depth),
                "tg_at_depth_vs_server": ratio(d["tg_depth_tps"], ls.get("tg_depth_tps")),
                "peak_rss": ratio(d["peak_rss_mb"], ls.get("peak_rss_mb")),
            }
            entry["fraction_of_machine"][name] = fractions(d, d["tg_depth_tps"], entry["machine"], work,
                                                           kv=d["kv_type"])  # what "auto" stood for
        if {"f32", "f16"} <= set(args.kv_type):
            for p in args.precision:
                a, b = entry[f"ditto_{p}_f16"], entry[f"ditto_{p}_f32"]
                entry["ratios"][f"ditto_{p}_f16_over_f32"] = {k: ratio(a[k], b[k]) for k in
                                                              ("pp_tps", "tg_tps", "tg_depth_tps", "peak_rss_mb")}
        rounds.append(entry)

    def med(path: tuple[str, ...]):
        def get(e):
            for key in path:
                e = e.get(key, {}) if isinstance(e, dict) else {}
            return e if e != {} else None
        return rnd(median(get(e) for e in rounds), 3)

    summary = {
        **{name: {k: med((name, k)) for k in ("pp_tps", "tg_tps", "tg_depth_tps", "peak_rss_mb")} for name in dittos},
        "llama_cpp": {
            "pp_tps": med(("llama_bench", "pp_tps")),
            "tg_tps": med(("llama_bench", "tg_tps")),
            "tg_depth_tps": med(("llama_bench", "tg_depth_tps")) or med(("llama_server", "tg_depth_tps")),
            "tg_depth_tps_server": med(("llama_server", "tg_depth_tps")),
            "peak_rss_mb_server": med(("llama_server", "peak_rss_mb")),
        },
        "ratios": {name: {k: med(("ratios", name, k)) for k in rounds[0]["ratios"][name]}
                   for name in rounds[0]["ratios"]},
        "fraction_of_machine": {
            engine: {k: rnd(median(e["fraction_of_machine"][engine][k] for e in rounds), 3)
                     for k in rounds[0]["fraction_of_machine"][engine]}
            for engine in (*dittos, "llama_cpp")},
        "machine_limits": {k: med(("machine", k)) for k in ("read_gbps", "fma_peak_gflops")},
        "targets": {"pp": ">= 3", "tg": ">= 1.5", "tg_at_depth": ">= 2", "peak_rss": "<= 1"},
    }
    common.emit_json({
        "benchmark": "engine",
        "model": str(model),
        "config": {"threads": args.threads, "pp": args.pp, "tg": args.tg, "depth": args.depth,
                   "precisions": args.precision, "kv_types": args.kv_type,
                   "ctx_for_memory": args.ctx, "reps": args.reps, "rounds": args.rounds,
                   "llama_bin_dir": args.llama_bin_dir, "llama_version": common.llama_version(args.llama_bin_dir),
                   "llama_flash_attn": True, "llama_bench_has_depth": depth_ok},
        "machine": common.machine_info(args.threads),
        "summary": summary,
        "rounds": rounds,
        "notes": [
            "tokens/s; ratios are ditto / llama.cpp within one round (ditto_P_f16_over_f32: the two KV types), "
            "median over rounds",
            "ditto: native Context.decode timed in a subprocess, no sampling; llama.cpp: llama-bench -fa 1",
            "loadavg_1min_after: the machine's load after each step; llama.cpp's worker threads "
            "spin-wait and slow down far more than ditto's when the 2 cores are oversubscribed",
            "fraction_of_machine: decode = tok/s x bytes read per token / read bandwidth, prefill = "
            "FLOP/s / FMA peak; both limits measured in the same round (machine_limits.py); "
            f"bytes per token {work['decode_bytes']}, FLOP per prefill token {work['prefill_flops']}",
            "peak_rss: ditto worker (whole benchmark, n_ctx=ctx) vs llama-server -c ctx -np 1 -fa on "
            "(2048-token prompt + 128 tokens); both map the weights",
        ],
    }, args.out, stem="engine")


if __name__ == "__main__":
    main()
