"""Fuzz ditto's GGUF loader: mutate valid tiny models, load each mutant.

    python bench/fuzz_gguf.py --cases 10000 [--seed 1] [--mem-gb 4] [--timeout 10]

Every case must either load or raise GGUFError. Anything else (another
exception, a loaded model that breaks an invariant, a case slower than
--timeout seconds) counts as "other" and makes the exit status 1. The
process runs under RLIMIT_AS (--mem-gb), so a header that made the loader
allocate far beyond the file size would fail with MemoryError. Prints a
JSON summary.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import resource
import signal
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from gguf_factory import check_loaded, mutate, write_fuzz_seeds  # noqa: E402


def _import_loader():
    try:
        from ditto.engine import gguf_model
    except ImportError:  # not installed (yet): load the module from the tree
        spec = importlib.util.spec_from_file_location("gguf_model", REPO / "engine" / "gguf_model.py")
        gguf_model = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(gguf_model)
    return gguf_model


class CaseTimeout(Exception):
    pass


def _on_alarm(signum, frame):
    raise CaseTimeout()


def run_case(loader, data: bytes, path: str, timeout: int) -> tuple[str, str]:
    with open(path, "wb") as f:
        f.write(data)
    signal.alarm(timeout)
    try:
        mf = loader.load_model_file(path)
        check_loaded(mf)
        del mf
        return "ok", ""
    except loader.GGUFError as e:
        return "GGUFError", str(e)
    except CaseTimeout:
        return "other", f"timeout after {timeout}s"
    except BaseException as e:  # noqa: BLE001 - the point is to catch everything
        if isinstance(e, KeyboardInterrupt):
            raise
        return "other", "".join(traceback.format_exception(e))
    finally:
        signal.alarm(0)
        os.unlink(path)  # fresh file per case: never rewrite a mapped file


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--mem-gb", type=float, default=4.0)
    ap.add_argument("--timeout", type=int, default=10, help="seconds per case")
    ap.add_argument("--save-failures", default=None, help="directory for files that hit 'other'")
    args = ap.parse_args(argv)

    loader = _import_loader()
    tmp = tempfile.mkdtemp(prefix="ditto_fuzz_")
    seeds = write_fuzz_seeds(tmp)
    limit = int(args.mem_gb * (1 << 30))
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
    signal.signal(signal.SIGALRM, _on_alarm)

    rng = random.Random(args.seed)
    counts: Counter[str] = Counter()
    messages: Counter[str] = Counter()
    failures = []
    t0 = time.perf_counter()
    slowest = 0.0
    for i in range(args.cases):
        seed = seeds[i % len(seeds)]
        data = mutate(seed, rng)
        t = time.perf_counter()
        kind, detail = run_case(loader, data, os.path.join(tmp, f"case{i}.gguf"), args.timeout)
        slowest = max(slowest, time.perf_counter() - t)
        counts[kind] += 1
        if kind == "GGUFError":
            messages[_message_class(detail)] += 1
        elif kind == "other":
            failures.append({"case": i, "seed": seed.name, "detail": detail[-2000:]})
            if args.save_failures:
                os.makedirs(args.save_failures, exist_ok=True)
                Path(args.save_failures, f"case{i}.gguf").write_bytes(data)
    summary = {
        "cases": args.cases,
        "ok": counts["ok"],
        "GGUFError": counts["GGUFError"],
        "other": counts["other"],
        "seconds": round(time.perf_counter() - t0, 1),
        "slowest_case_s": round(slowest, 3),
        "rlimit_as_gb": args.mem_gb,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
        "top_errors": messages.most_common(40),
        "failures": failures[:10],
    }
    print(json.dumps(summary, indent=2))
    return 1 if counts["other"] else 0


def _message_class(msg: str) -> str:
    """The message with names and numbers blanked, to group similar errors."""
    import re

    msg = re.sub(r"'[^']*'", "'…'", msg)
    return re.sub(r"\d+", "N", msg)[:100]


if __name__ == "__main__":
    sys.exit(main())
