"""Next-edit suggestions on a scripted editing session: plain against speculative.

    python bench/next_edit.py [--files 6] [--model GGUF] [--threads 2] [--format auto]

The session: in real Python files of this interpreter's standard library, a
function's first parameter that its body uses again is renamed at the
definition (one edit, as a didChange would bring it), and the next edit is
asked for at the definition's line. Each suggestion is decoded twice,
greedy, without and with the seeded edit drafter (engine/next_edit.py), and
must give the same tokens. Per suggestion: latency, forward passes, tokens
per pass, drafted / accepted, and whether the answer is a suggestion (not
null). Missing: the same prompts through llama-server (see bench/rewrite.py
for how that comparison is run).

JSON to stdout, progress to stderr.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import statistics
import sys
import time
from pathlib import Path


def renames(path: Path, limit: int):
    """(text, line of the def, old name, new name) of functions whose first parameter recurs in the body."""
    text = path.read_text(encoding="utf-8")
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.FunctionDef) and node.args.args:
            name = node.args.args[0].arg
            body = text.split("\n")[node.lineno:node.end_lineno]
            if name not in ("self", "cls") and sum(line.count(name) for line in body) >= 2 and limit > 0:
                limit -= 1
                yield text, node.lineno - 1, name, name + "_new"


def run(llm, job_args, speculate: bool):
    from ditto.engine.next_edit import NextEditJob

    job = NextEditJob(*job_args)
    llm.ctx.truncate(0, 0)
    started = time.perf_counter()
    req = job.make_request(llm, speculate=speculate)
    llm.decoder.run([req])
    seconds = time.perf_counter() - started
    return req.output, {"seconds": round(seconds, 3), "generated": req.stats.generated,
                        "forward_passes": req.stats.forward_passes,
                        "tokens_per_pass": round(req.stats.tokens_per_pass, 2),
                        "drafted": req.stats.drafted, "accepted": req.stats.accepted,
                        "suggestion": job.suggestion() is not None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--files", type=int, default=6)
    ap.add_argument("--model", default=None, help="GGUF path (default: ditto's default model)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--format", default="auto", choices=("auto", "sweep", "instruct"))
    args = ap.parse_args()

    from ditto.engine.llm import LLM
    from ditto.engine.next_edit import EditHistory, choose_format

    llm = LLM(args.model, n_ctx=4096, n_threads=args.threads)
    fmt = choose_format(args.format, llm.tokenizer)
    stdlib = sorted(p for p in Path(os.__file__).parent.glob("*.py") if 2000 < p.stat().st_size < 20000)
    results = []
    for path in stdlib[::max(1, len(stdlib) // args.files)][:args.files]:
        for text, line, old, new in renames(path, 1):
            lines = text.split("\n")
            renamed = lines[:line] + [lines[line].replace(old, new, 1)] + lines[line + 1:]
            history = EditHistory()
            history.record(text, "\n".join(renamed), now=0.0)
            job_args = (path.name, renamed, line, history.recent(), fmt)
            plain_tokens, plain = run(llm, job_args, speculate=False)
            spec_tokens, spec = run(llm, job_args, speculate=True)
            results.append({"file": path.name, "rename": f"{old} -> {new}", "plain": plain, "spec": spec,
                            "same_output": plain_tokens == spec_tokens})
            print(f"{path.name}: {old}: plain {plain['seconds']}s, spec {spec['seconds']}s, "
                  f"{spec['accepted']}/{spec['drafted']} accepted", file=sys.stderr)
    summary = {}
    if results:
        for kind in ("plain", "spec"):
            secs = sorted(r[kind]["seconds"] for r in results)
            summary[kind] = {"p50_seconds": statistics.median(secs),
                             "p95_seconds": secs[min(len(secs) - 1, int(0.95 * len(secs)))],
                             "tokens_per_pass": round(statistics.mean(r[kind]["tokens_per_pass"] for r in results), 2),
                             "drafted": sum(r[kind]["drafted"] for r in results),
                             "accepted": sum(r[kind]["accepted"] for r in results),
                             "suggestions": sum(r[kind]["suggestion"] for r in results)}
        summary["all_same_output"] = all(r["same_output"] for r in results)
    json.dump({"model": llm.name, "format": fmt, "summary": summary, "runs": results}, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
