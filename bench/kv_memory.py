"""KV cache memory: a full cache against the ring (sliding layers only), per
KV element type, at a long context.

    python bench/kv_memory.py [--model gemma3-270m|GGUF] [--ctx 8192] [--fill 8064] [--kv-type f16 [f32]]

For each (cache, kv type) a worker process loads the model with a context of
--ctx tokens, prefills --fill tokens of real code (standard-library files)
and decodes 16 more, then reports the KV bytes the context reserves
(Context.kv_bytes: what a full sequence commits) and the process's peak RSS
(the weights are memory-mapped, so both workers count them alike). The ring
applies to models with sliding-window layers (Gemma 3: window 512, every
sixth layer global); a model without them is refused for the ring. JSON on
stdout.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import log, mb  # noqa: E402
from engine import text_tokens  # noqa: E402


def worker(args) -> None:
    import numpy as np

    from ditto.engine.llm import LLM

    llm = LLM(args.model, n_ctx=args.ctx, n_seq=1, n_threads=args.threads, max_batch=512,
              kv_type=args.kv_type[0], kv_ring=args.ring)
    ctx = llm.ctx
    toks = np.asarray(text_tokens(llm.tokenizer, args.fill + 16), dtype=np.int32)
    starts = [(s, min(512, args.fill - s)) for s in range(0, args.fill, 512)]
    starts += [(args.fill + i, 1) for i in range(16)]          # decode steps
    for s, n in starts:
        ctx.decode(toks[s:s + n], np.arange(s, s + n, dtype=np.int32), np.zeros(n, np.int32))
    print(json.dumps({"kv_bytes": ctx.kv_bytes, "ring_slots": ctx.ring_slots, "held_from": ctx.held_from(0),
                      "seq_len": ctx.seq_len(0), "n_ctx": ctx.n_ctx}))


def run(args, model: Path, kv_type: str, ring: bool) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--model", str(model), "--ctx", str(args.ctx),
           "--fill", str(args.fill), "--threads", str(args.threads), "--kv-type", kv_type]
    res = common.run_measured(cmd + (["--ring"] if ring else []), timeout=7200)
    if res["returncode"] != 0:
        raise RuntimeError(f"worker failed ({res['returncode']}):\n{res['stderr'][-3000:]}")
    data = json.loads(res["stdout"].strip().splitlines()[-1])
    return {**data, "kv_mb": mb(data["kv_bytes"]), "peak_rss_mb": mb(res["peak_rss_bytes"]),
            "seconds": round(res["seconds"], 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_args(ap)
    from ditto.engine.options import DEFAULT_KV_TYPE, KV_TYPES
    ap.add_argument("--ctx", type=int, default=8192, help="context size in tokens (default: 8192)")
    ap.add_argument("--fill", type=int, default=8064, help="tokens prefilled before 16 decode steps (default: 8064)")
    ap.add_argument("--kv-type", nargs="+", choices=KV_TYPES, default=[DEFAULT_KV_TYPE],
                    help=f"KV element type(s) to measure (default: {DEFAULT_KV_TYPE})")
    ap.add_argument("--ring", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.fill + 16 > args.ctx:
        raise SystemExit(f"--fill {args.fill} + 16 decode steps do not fit --ctx {args.ctx}")
    if args.worker:
        worker(args)
        return
    from ditto.engine.model_store import resolve_model
    model = Path(resolve_model(args.model or "gemma3-270m"))
    rows = {}
    for kv in args.kv_type:
        for ring in (False, True):
            name = f"{'ring' if ring else 'full'}_{kv}"
            log(f"{name} ...")
            rows[name] = run(args, model, kv, ring)
            log(f"  {json.dumps(rows[name])}")
    common.emit_json({"benchmark": "kv_memory", "model": model.name, "ctx": args.ctx, "fill": args.fill,
                      "threads": args.threads, "results": rows,
                      "ring_over_full": {kv: {k: common.ratio(rows[f"ring_{kv}"][k], rows[f"full_{kv}"][k])
                                              for k in ("kv_mb", "peak_rss_mb")} for kv in args.kv_type}},
                     args.out, stem="kv_memory")


if __name__ == "__main__":
    main()
