"""Replay kept rewrite token streams through a drafter, offline (no model run).

    python bench/draft_replay.py RESULT.json [--answer plain|ideal|both] [--drafter auto]
                                 [--rejections N] [--model GGUF]

RESULT.json is bench/rewrite.py's output with --keep-tokens. Each file's
answer is decoded again by engine.drafters.simulate, the reference output
standing in for the model: acceptance is exactly what a speculative run
with the same drafter and length policy would get (it depends on tokens
only, not on the machine). Answers:

  plain   the model's own greedy output (what ditto_spec verifies)
  ideal   the original with the rename applied (every whole-word occurrence
          of the function's name), then the closing fence: an answer that
          follows the original throughout

Per answer: acceptance, tokens per forward pass, acceptance where the answer
copies the original, per drafter, and the top rejection causes, and a
modelled speed-up over plain decoding: a forward pass of w tokens costs
about PASS_COST + w token-times (--pass-cost; fitted to timed verify
batches of SmolLM2 at 2k context: a pass's fixed part, the weights read
once, is worth about 3 tokens' compute), so speed-up = N (PASS_COST + 1)
/ (passes PASS_COST + fed tokens), where fed = drafted + passes. The model
file is read for its tokenizer only (decoding texts, encoding ideal answers).
JSON to stdout.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import draft_analysis  # noqa: E402

RENAME = re.compile(r"Rename the function (\w+) to (\w+)\.")


def ideal_answer(tokenizer, entry: dict) -> list[int]:
    """The source with the instruction's rename applied, and the fence closed."""
    m = RENAME.fullmatch(entry["instruction"])
    if m is None:
        raise SystemExit(f"{entry['path']}: not a rename instruction: {entry['instruction']!r}")
    old, new = m.groups()
    source = tokenizer.decode(entry["tokens"]["source"])
    renamed = re.sub(rf"\b{re.escape(old)}\b", new, source).rstrip("\n")
    return tokenizer.encode(renamed + "\n```\n")


def modelled_speedup(answer_tokens: int, passes: int, drafted: int, pass_cost: float) -> float | None:
    """Plain decoding's cost over speculative decoding's, both in token-times."""
    cost = passes * pass_cost + drafted + passes
    return round(answer_tokens * (pass_cost + 1) / cost, 3) if cost else None


def replay(drafter_name: str, prompt: list[int], source: list[int], answer: list[int], decode,
           pass_cost: float) -> dict:
    from ditto.engine.drafters import TracingDrafter, make_drafter, simulate

    trace = TracingDrafter(make_drafter(drafter_name, source_tokens=source))
    stats = simulate(trace, prompt + answer, len(prompt))
    rejects = draft_analysis.rejections(trace.records, len(prompt), answer, source, decode)
    return {
        "answer_tokens": len(answer),
        "forward_passes": stats.calls,
        "tokens_per_pass": round(len(answer) / stats.calls, 3) if stats.calls else None,
        "drafted": stats.drafted,
        "accepted": stats.accepted,
        "acceptance": round(stats.acceptance_rate, 4),
        "modelled_speedup": modelled_speedup(len(answer), stats.calls, stats.drafted, pass_cost),
        "where_copying": draft_analysis.acceptance_where_copying(trace.records, len(prompt), answer, source),
        "per_drafter": draft_analysis.per_drafter(trace.records),
        "_rejections": rejects,
    }


def total(runs: list[dict], pass_cost: float) -> dict:
    n, passes = sum(r["answer_tokens"] for r in runs), sum(r["forward_passes"] for r in runs)
    drafted = sum(r["drafted"] for r in runs)
    accepted = sum(r["accepted"] for r in runs)
    cd = sum(r["where_copying"]["drafted"] for r in runs)
    ca = sum(r["where_copying"]["accepted"] for r in runs)
    return {
        "answer_tokens": n,
        "forward_passes": passes,
        "tokens_per_pass": round(n / passes, 3) if passes else None,
        "drafted": drafted,
        "accepted": accepted,
        "acceptance": round(accepted / drafted, 4) if drafted else None,
        "modelled_speedup": modelled_speedup(n, passes, drafted, pass_cost),
        "modelled_speedup_geomean": common.geomean([r["modelled_speedup"] for r in runs]),
        "where_copying": {"drafted": cd, "accepted": ca, "acceptance": round(ca / cd, 4) if cd else None},
        "per_drafter": draft_analysis.merge_per_drafter([r["per_drafter"] for r in runs]),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("result", help="bench/rewrite.py JSON written with --keep-tokens")
    ap.add_argument("--answer", choices=("plain", "ideal", "both"), default="both")
    ap.add_argument("--drafter", default="auto")
    ap.add_argument("--rejections", type=int, default=10, metavar="N", help="top N rejection causes per answer")
    ap.add_argument("--pass-cost", type=float, default=3.0,
                    help="a forward pass's fixed cost in token-times, for the modelled speed-up (default: 3)")
    ap.add_argument("--model", default=None, help="GGUF whose tokenizer the run used (default: ditto's default)")
    args = ap.parse_args()
    files = [f for f in json.loads(Path(args.result).read_text())["files"] if "tokens" in f]
    if not files:
        raise SystemExit(f"{args.result}: no token ids kept (run bench/rewrite.py with --keep-tokens)")
    from ditto.engine.gguf_model import load_model_file
    from ditto.engine.tokenizer import Tokenizer
    tokenizer = Tokenizer(load_model_file(common.resolve_model(args.model)).tokenizer)

    kinds = ("plain", "ideal") if args.answer == "both" else (args.answer,)
    out = {"drafter": args.drafter, "answers": {}}
    for kind in kinds:
        per_file, rejects = {}, []
        for f in files:
            t = f["tokens"]
            answer = t["plain_output"] if kind == "plain" else ideal_answer(tokenizer, f)
            run = replay(args.drafter, t["prompt"], t["source"], answer, tokenizer.decode, args.pass_cost)
            name = Path(f["path"]).name
            for r in run["_rejections"]:
                r["file"] = name
            rejects += run.pop("_rejections")
            per_file[name] = run
            common.log(f"{kind} {name}: acceptance {run['acceptance']}, where copying "
                       f"{run['where_copying']['acceptance']}, {run['tokens_per_pass']} tokens/pass, "
                       f"modelled speed-up {run['modelled_speedup']}")
        groups = draft_analysis.group_rejections(rejects)
        out["answers"][kind] = {"total": total(list(per_file.values()), args.pass_cost), "files": per_file,
                                "rejection_causes": groups[:args.rejections]}
    json.dump(out, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
