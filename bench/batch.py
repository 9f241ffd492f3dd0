"""Batch-rewrite throughput: the same real files rewritten one after another
(--jobs 1), with --jobs 4 and --jobs 8 (their decode steps share forward
passes), and on a local Ray instance with 2 actors; files per minute, wall
time, ratios against the sequential run, and whether every configuration
produced the same output for every file.

Each configuration is one `ditto rewrite --json` process on a fresh copy of
the files (model load included, as a user would see it). Prints JSON.

    python bench/batch.py [--files 16] [--max-tokens 256] [--no-ray]
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit_json, exit_on_sigterm, log, machine_info, new_name, ratio, rename_target, \
    resolve_model, rnd, stdlib_files  # noqa: E402


def pick_files(n: int) -> list[tuple[Path, str]]:
    """(file, instruction) pairs: real stdlib files with a function to rename."""
    picked = []
    for path in stdlib_files():
        target = rename_target(path.read_text(encoding="utf-8"))
        if target:
            name = target[0]
            picked.append((path, f"Rename the function {name} to {new_name(name)}."))
        if len(picked) == n:
            break
    return picked


def run_config(label: str, files: list[tuple[Path, str]], args, extra: list[str]) -> dict:
    """One ditto process over copies of all files (one instruction for all:
    the batch CLI takes one; the first file's rename stands for a project-wide one)."""
    with tempfile.TemporaryDirectory(prefix="ditto-batch-") as tmp:
        copies = []
        for i, (path, _) in enumerate(files):
            dst = Path(tmp) / f"{i:02d}_{path.name}"
            shutil.copy(path, dst)
            copies.append(str(dst))
        cmd = [sys.executable, "-m", "ditto.lsp.cli", "rewrite", *copies, "-i", files[0][1], "--json", "-q",
               "--threads", str(args.threads), "--model", str(args.model), *extra]
        if args.max_tokens:
            cmd += ["--max-tokens", str(args.max_tokens)]
        log(f"{label}: {' '.join(extra) or 'sequential'} ...")
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
    results = {}
    for line in proc.stdout.splitlines():
        r = json.loads(line)
        results[Path(r["file"]).name] = r
    generated = sum(r["stats"].get("generated", 0) for r in results.values())
    out = {"wall_seconds": rnd(wall), "files": len(results), "files_per_minute": rnd(60 * len(results) / wall),
           "generated_tokens": generated, "tokens_per_second": rnd(generated / wall),
           "complete": sum(r["status"] in ("changed", "unchanged") for r in results.values()),
           "exit_code": proc.returncode, "outputs": {k: r.get("output") for k, r in results.items()}}
    if not results:
        out["stderr_tail"] = proc.stderr[-1500:]
    log(f"  {label}: {out['wall_seconds']}s, {out['files_per_minute']} files/min")
    return out


def main() -> None:
    exit_on_sigterm()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=256, help="budget per file (0: ditto's default)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", default=None)
    ap.add_argument("--no-ray", action="store_true")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    args.model = resolve_model(args.model)
    files = pick_files(args.files)
    configs = [("sequential", []), ("jobs4", ["--jobs", "4"]), ("jobs8", ["--jobs", "8"])]
    if not args.no_ray:
        configs.append(("ray2", ["--ray", "local", "--actors", "2"]))
    runs = {label: run_config(label, files, args, extra) for label, extra in configs}
    base = runs["sequential"]
    same = {label: r["outputs"] == base["outputs"] for label, r in runs.items()}
    for r in runs.values():
        r.pop("outputs")
    emit_json({
        "bench": "batch",
        "machine": machine_info(args.threads),
        "files": [str(p) for p, _ in files],
        "instruction": files[0][1],
        "max_tokens": args.max_tokens,
        "runs": runs,
        "throughput_ratio_vs_sequential": {k: ratio(r["files_per_minute"], base["files_per_minute"])
                                           for k, r in runs.items()},
        "same_outputs_as_sequential": same,
        "target": "jobs8 >= 2.5x sequential",
    }, args.out, stem="batch")


if __name__ == "__main__":
    main()
