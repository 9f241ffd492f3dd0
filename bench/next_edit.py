"""Next-edit suggestions on real edit sequences: ditto's server against llama-server, in one run.

    python bench/next_edit.py [--repo PATH] [--commits 200] [--steps 12] [--format auto]
                              [--llama-bin-dir DIR | --no-llama] [--model GGUF] [--threads 2] [--out DIR]

The edits come from the history of a git repository (--repo, default: the
checkout this script is in): among its last --commits non-merge commits,
every modified Python file whose diff has 2 to --max-hunks small hunks
(each at most --max-hunk-lines lines a side) is an edit sequence. Its text
before the commit is opened in `ditto serve` (over stdio, as an editor runs
it); the hunks are applied one by one, top to bottom, each as one
incremental didChange; after every hunk but the last, ditto/nextEdit is
asked at the end of the hunk's first line. A suggestion "hits" when
applying it gives exactly the text after the commit's next hunk.

Per suggestion, from the client: latency; from ditto.status's next-edit
counters before and after: tokens generated, forward passes, drafted and
accepted. The summary gives p50 / p95 latency, tokens per forward pass,
drafts accepted, suggestions and hits.

The same prompt (built in this process by engine/next_edit.py from the same
edit history, so its token ids are the server's) then goes, right after
ditto's answer, to llama-server without speculation and with --spec-type
ngram-simple and ngram-mod (one server per mode, all three started before
the replay: -fa on, one slot, cache_prompt on as an editor plugin uses it,
temperature 0, the same token budget and stop string), so the engines
alternate on every suggestion of the same run and the ratios of their
p50 / p95 hold on a shared, drifting machine. (The prompt is rebuilt with the
times the edits were sent; if the server grouped an edit differently, at
the 3 s grouping limit, the run says so: same_hunks false.)

JSON to stdout, progress to stderr.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import LLAMA_MODES, log, ratio, rnd  # noqa: E402
from lsp_client import LspClient  # noqa: E402

COUNTERS = ("generated", "forward_passes", "drafted", "accepted")
HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


# ---- edit sequences from git history -------------------------------------------------

@dataclass
class Hunk:
    old_start: int          # 1-based; for a pure insertion, the line after which it goes
    old: list[str]
    new: list[str]


@dataclass
class Sequence:
    rev: str
    path: str
    before: str
    hunks: list[Hunk]


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout


def parse_hunks(diff: str) -> list[Hunk]:
    """The hunks of a `git diff -U0` of one file."""
    hunks: list[Hunk] = []
    for line in diff.split("\n"):
        if (m := HUNK.match(line)) is not None:
            hunks.append(Hunk(int(m.group(1)), [], []))
        elif hunks and line.startswith("-") and not line.startswith("---"):
            hunks[-1].old.append(line[1:])
        elif hunks and line.startswith("+") and not line.startswith("+++"):
            hunks[-1].new.append(line[1:])
    return hunks


def edit_sequences(repo: Path, commits: int, max_hunks: int, max_hunk_lines: int):
    """Small multi-hunk edits of Python files in the repository's recent history."""
    for rev in git(repo, "log", "--no-merges", "--format=%H", "-n", str(commits)).split():
        try:
            paths = git(repo, "diff", "--name-only", "--diff-filter=M", f"{rev}^", rev, "--", "*.py").split()
        except subprocess.CalledProcessError:
            continue        # the root commit
        for path in paths:
            hunks = parse_hunks(git(repo, "diff", "-U0", "--no-color", f"{rev}^", rev, "--", path))
            before = git(repo, "show", f"{rev}^:{path}")
            if 2 <= len(hunks) <= max_hunks and before.endswith("\n") and all(
                    len(h.old) <= max_hunk_lines and len(h.new) <= max_hunk_lines for h in hunks):
                yield Sequence(rev[:10], path, before, hunks)


def apply_hunk(lines: list[str], hunk: Hunk, delta: int) -> tuple[int, int]:
    """Applies the hunk to lines (in place); (its first line now, the new delta)."""
    at = (hunk.old_start - 1 if hunk.old else hunk.old_start) + delta
    lines[at:at + len(hunk.old)] = hunk.new
    return at, delta + len(hunk.new) - len(hunk.old)


def text_of(lines: list[str]) -> str:
    return "".join(line + "\n" for line in lines)


# ---- ditto's server ------------------------------------------------------------------

def apply_result(text: str, result: dict) -> str:
    """The text after a ditto/nextEdit result (positions in characters: the
    server was initialized without a position encoding, so UTF-16, which is
    characters for the code here)."""
    lines = text.split("\n")

    def offset(p: dict) -> int:
        return sum(len(line) + 1 for line in lines[:p["line"]]) + p["character"]
    return text[:offset(result["range"]["start"])] + result["newText"] + text[offset(result["range"]["end"]):]


def replay_ditto(args, sequences: list[Sequence], also) -> list[dict]:
    """Runs every sequence through `ditto serve`; per suggestion, its results
    and what also(path, text, cursor line, edits with their times, hunks on the
    server) adds."""
    cmd = [sys.executable, "-m", "ditto.lsp.cli", "serve", "--threads", str(args.threads), "--model", str(args.model)]
    client = LspClient(cmd)
    client.request("initialize", {"processId": os.getpid(), "rootUri": None, "capabilities": {},
                                  "initializationOptions": {"nextEditFormat": args.format, "prefetch": False,
                                                            "nextEditTimeBudgetMs": 600_000}})
    client.notify("initialized", {})
    counters = lambda: client.request("workspace/executeCommand", {"command": "ditto.status"})["next_edit"]  # noqa: E731
    counters()          # waits for the model
    results = []
    for n, seq in enumerate(sequences):
        uri = f"file:///bench/{n}/{seq.path}"
        lines = seq.before.rstrip("\n").split("\n")
        client.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "python", "version": 1,
                                                                "text": seq.before}})
        delta, edits = 0, []
        for i, hunk in enumerate(seq.hunks):
            before = text_of(lines)
            at, delta = apply_hunk(lines, hunk, delta)
            client.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": i + 2}, "contentChanges": [
                {"range": {"start": {"line": at, "character": 0}, "end": {"line": at + len(hunk.old), "character": 0}},
                 "text": text_of(hunk.new)}]})
            edits.append((before, text_of(lines), time.monotonic()))
            if i + 1 == len(seq.hunks) or len(results) >= args.steps:
                continue
            line = at if hunk.new else max(0, at - 1)
            cursor = {"line": line, "character": len(lines[line]) if line < len(lines) else 0}
            nxt = list(lines)
            apply_hunk(nxt, seq.hunks[i + 1], delta)
            old = counters()
            t0 = time.perf_counter()
            result = client.request("ditto/nextEdit", {"textDocument": {"uri": uri}, "position": cursor})
            ms = (time.perf_counter() - t0) * 1000
            new = counters()
            run = {"rev": seq.rev, "path": seq.path, "hunk": i + 1, "ms": round(ms, 1),
                   **{k: new[k] - old[k] for k in COUNTERS},
                   "suggestion": result is not None,
                   "hit": result is not None and apply_result(text_of(lines), result) == text_of(nxt),
                   "hunks_on_server": new["hunks"].get(uri)}
            log(f"{seq.rev} {seq.path} hunk {i + 1}: {ms:.0f} ms, {run['generated']} tokens in "
                f"{run['forward_passes']} passes, {run['accepted']}/{run['drafted']} accepted, "
                f"{'hit' if run['hit'] else 'suggestion' if run['suggestion'] else 'none'}")
            results.append({"ditto": run, **also(seq.path, text_of(lines), cursor["line"], edits,
                                                 run["hunks_on_server"])})
        client.notify("textDocument/didClose", {"textDocument": {"uri": uri}})
        if len(results) >= args.steps:
            break
    client.close()
    return results


# ---- the same prompts through llama-server ---------------------------------------------

class SamePrompts:
    """Builds each request's prompt as the server did and runs it on every llama-server mode."""

    def __init__(self, args, servers: dict) -> None:
        from ditto.engine.llm import LLM
        from ditto.engine.next_edit import choose_format

        self.llm = LLM(str(args.model), n_ctx=4096, n_threads=args.threads, n_seq=1)
        self.format = choose_format(args.format, self.llm.tokenizer)
        self.servers = servers

    def __call__(self, path: str, text: str, cursor_line: int, edits: list, hunks_on_server: int) -> dict:
        from ditto.engine.next_edit import FILE_SEP, EditHistory, NextEditJob, lines_of

        history = EditHistory()
        for before, after, when in edits:
            history.record(before, after, when)
        job = NextEditJob(path, lines_of(text), cursor_line, history.recent(), self.format)
        req = job.make_request(self.llm, speculate=False)
        stop = FILE_SEP if self.format == "sweep" else "\n" + job.rewrite.fence
        out = {"same_hunks": len(history.recent()) == hunks_on_server}
        for mode, srv in self.servers.items():
            out[mode] = llama_run(srv, {"prompt": list(req.prompt), "n_predict": req.max_tokens, "stop": [stop]})
        log("    " + ", ".join(f"{mode} {out[mode]['ms']:.0f} ms ({out[mode]['generated']} tokens)"
                              for mode in self.servers))
        return out


def llama_run(srv: common.LlamaServer, payload: dict) -> dict:
    t0 = time.perf_counter()
    res = srv.completion({**payload, "temperature": 0, "top_k": 1, "repeat_penalty": 1.0, "seed": 1,
                          "cache_prompt": True})
    t = res.get("timings", {})
    return {"ms": round((time.perf_counter() - t0) * 1000, 1), "generated": t.get("predicted_n"),
            "drafted": t.get("draft_n") or 0, "accepted": t.get("draft_n_accepted") or 0}


# ---- summary ----------------------------------------------------------------------------

def summary(runs: list[dict]) -> dict:
    ms = sorted(r["ms"] for r in runs)
    out = {"suggestions_asked": len(runs), "p50_ms": rnd(statistics.median(ms), 1),
           "p95_ms": rnd(ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))], 1),
           "generated": sum(r["generated"] or 0 for r in runs),
           "drafted": sum(r["drafted"] for r in runs), "accepted": sum(r["accepted"] for r in runs)}
    out["acceptance"] = rnd(out["accepted"] / out["drafted"], 3) if out["drafted"] else None
    if "forward_passes" in runs[0]:
        passes = sum(r["forward_passes"] for r in runs)
        out["tokens_per_pass"] = rnd(out["generated"] / passes) if passes else None
        out["suggestions"] = sum(r["suggestion"] for r in runs)
        out["hits"] = sum(r["hit"] for r in runs)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    common.add_common_args(ap)
    ap.add_argument("--repo", default=str(common.ROOT), help="git repository whose history gives the edits "
                                                             "(default: this checkout)")
    ap.add_argument("--commits", type=int, default=200, help="recent non-merge commits to search (default 200)")
    ap.add_argument("--steps", type=int, default=12, help="suggestions to ask for in all (default 12)")
    ap.add_argument("--max-hunks", type=int, default=6, help="most hunks in one file's diff (default 6)")
    ap.add_argument("--max-hunk-lines", type=int, default=4, help="most lines on each side of a hunk (default 4)")
    ap.add_argument("--format", default="auto", choices=("auto", "sweep", "instruct"),
                    help="the nextEditFormat setting (default auto: sweep when the model has <|file_sep|>)")
    ap.add_argument("--no-llama", action="store_true", help="run ditto alone")
    args = ap.parse_args()
    common.exit_on_sigterm()
    args.model = common.resolve_model(args.model)
    if not args.no_llama:
        common.llama_binary(args.llama_bin_dir, "llama-server")
    repo = Path(args.repo).resolve()
    sequences = list(edit_sequences(repo, args.commits, args.max_hunks, args.max_hunk_lines))
    if not sequences:
        raise SystemExit(f"no small multi-hunk Python edits in the last {args.commits} commits of {repo}")
    log(f"{len(sequences)} edit sequences in {repo}")
    with contextlib.ExitStack() as stack:
        servers = {} if args.no_llama else {
            mode: stack.enter_context(common.LlamaServer(args.llama_bin_dir, args.model, threads=args.threads,
                                                         ctx=4096, extra=extra))
            for mode, extra in LLAMA_MODES.items()}
        for srv in servers.values():
            srv.completion({"prompt": "def", "n_predict": 1})      # pages the weights in
        runs = replay_ditto(args, sequences, SamePrompts(args, servers) if servers else lambda *a: {})
    report = {engine: summary([r[engine] for r in runs]) for engine in ["ditto", *servers]}
    if servers:
        report["prompts_with_the_servers_hunks"] = sum(r["same_hunks"] for r in runs)
        for mode in servers:
            for q in ("p50_ms", "p95_ms"):
                report[f"{mode}_{q}_over_ditto"] = ratio(report[mode][q], report["ditto"][q])
    common.emit_json({"bench": "next_edit", "repo": str(repo), "model": str(args.model), "format": args.format,
                      "summary": report, "runs": runs, "machine": common.machine_info(args.threads),
                      "llama_version": None if args.no_llama else common.llama_version(args.llama_bin_dir)},
                     args.out, stem="next_edit")
    return 0


if __name__ == "__main__":
    sys.exit(main())
