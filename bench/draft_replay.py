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
copies the original, per drafter, and the top rejection causes. The model
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


def replay(drafter_name: str, prompt: list[int], source: list[int], answer: list[int], decode) -> dict:
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
        "where_copying": draft_analysis.acceptance_where_copying(trace.records, len(prompt), answer, source),
        "per_drafter": draft_analysis.per_drafter(trace.records),
        "_rejections": rejects,
    }


def total(runs: list[dict]) -> dict:
    drafted = sum(r["drafted"] for r in runs)
    accepted = sum(r["accepted"] for r in runs)
    cd = sum(r["where_copying"]["drafted"] for r in runs)
    ca = sum(r["where_copying"]["accepted"] for r in runs)
    return {
        "answer_tokens": sum(r["answer_tokens"] for r in runs),
        "forward_passes": sum(r["forward_passes"] for r in runs),
        "tokens_per_pass": round(sum(r["answer_tokens"] for r in runs) / max(1, sum(r["forward_passes"] for r in runs)), 3),
        "drafted": drafted,
        "accepted": accepted,
        "acceptance": round(accepted / drafted, 4) if drafted else None,
        "where_copying": {"drafted": cd, "accepted": ca, "acceptance": round(ca / cd, 4) if cd else None},
        "per_drafter": draft_analysis.merge_per_drafter([r["per_drafter"] for r in runs]),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("result", help="bench/rewrite.py JSON written with --keep-tokens")
    ap.add_argument("--answer", choices=("plain", "ideal", "both"), default="both")
    ap.add_argument("--drafter", default="auto")
    ap.add_argument("--rejections", type=int, default=10, metavar="N", help="top N rejection causes per answer")
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
            run = replay(args.drafter, t["prompt"], t["source"], answer, tokenizer.decode)
            name = Path(f["path"]).name
            for r in run["_rejections"]:
                r["file"] = name
            rejects += run.pop("_rejections")
            per_file[name] = run
            common.log(f"{kind} {name}: acceptance {run['acceptance']}, where copying "
                       f"{run['where_copying']['acceptance']}, {run['tokens_per_pass']} tokens/pass")
        groups = draft_analysis.group_rejections(rejects)
        out["answers"][kind] = {"total": total(list(per_file.values())), "files": per_file,
                                "rejection_causes": groups[:args.rejections]}
    json.dump(out, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
