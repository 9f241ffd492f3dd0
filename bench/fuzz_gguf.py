"""Fuzz ditto with hostile GGUF files, end to end: the long run.

    python bench/fuzz_gguf.py --cases 10000 [--first 0] [--timeout 120]

Each case (a seed) is a mutated tiny model, either byte-mutated or well
formed with wrong values, that goes through every stage it can: the header,
validation, the tokenizer, tokenizing, the chat template, the native model
and context, decoding and saving state (tests/fuzz_pipeline.py). A stage may
only refuse with its own clear error; any other exception, a crash of the
case's process or a case slower than --timeout seconds is a failure, listed
with its seed (`run_case(seed, ...)` reproduces it). Prints a JSON summary
with how many cases passed each stage; exit status 1 on any failure.
tests/test_gguf_fuzz.py runs the same cases, fewer of them.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fuzz_pipeline import run_cases  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=10000)
    ap.add_argument("--first", type=int, default=0, help="first seed")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per case before it counts as a hang")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    summary = run_cases(args.first, args.cases, case_timeout_s=args.timeout)
    print(json.dumps(dict(summary.as_json(), seconds=round(time.perf_counter() - t0, 1)), indent=2))
    return 1 if summary.failures else 0


if __name__ == "__main__":
    sys.exit(main())
