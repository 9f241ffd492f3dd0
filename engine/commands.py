"""The engine's commands: `ditto generate`, `tokenize`, `rewrite` and `model`.

lsp/cli.py builds the one parser of the `ditto` command and calls these with
its parsed arguments. Generated text and diffs go to stdout and nothing else
does; progress, stats and errors go to stderr, so `ditto generate ... >
out.txt` captures only text.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

from . import model_store
from .sampling import SamplingParams


def load_llm(args: argparse.Namespace, n_seq: int = 1):
    from .llm import LLM

    return LLM(args.model, n_ctx=args.ctx, n_seq=n_seq, n_threads=args.threads, precision=args.precision,
               kv_type=args.kv_type)


# ---- ditto model ------------------------------------------------------------

def cmd_model_pull(args: argparse.Namespace) -> int:
    path = model_store.pull(progress=lambda msg: print(msg, file=sys.stderr), model=args.name)
    print(path)
    return 0


def cmd_model_path(args: argparse.Namespace) -> int:
    print(model_store.resolve_model(args.name))
    return 0


def cmd_model_list(args: argparse.Namespace) -> int:
    from .model_discovery import discover, report

    reports = [report(m) for m in discover()]
    if args.json:
        print(json.dumps([r.as_dict() for r in reports], indent=1))
        return 0
    if not reports:
        print("no GGUF models found (ditto's cache, the Hugging Face cache, Ollama, LM Studio); "
              "`ditto model pull` fetches the default", file=sys.stderr)
    for r in reports:
        verdict = "runs" if r.runnable else f"cannot run: {r.reason}"
        print(f"{r.model.name}\t{r.architecture or '?'}\t{r.quant or '?'}\t{r.size / 1e6:.0f} MB\t{verdict}")
    return 0


# ---- ditto generate -----------------------------------------------------------

def read_text_arg(text: str | None, path: str | None) -> str:
    """The text of --prompt, or of a file ('-': stdin) exactly as its bytes
    are: no newline translation, so a CRLF file keeps its carriage returns."""
    from .source_text import decode

    if path is None:
        return text or ""
    if path == "-":
        return decode(sys.stdin.buffer.read())
    with open(path, "rb") as f:
        return decode(f.read())


def cmd_generate(args: argparse.Namespace) -> int:
    text = read_text_arg(args.prompt, args.prompt_file)
    if not text:
        raise SystemExit("ditto generate: the prompt is empty")
    llm = load_llm(args)
    prompt = llm.encode_chat([{"role": "user", "content": text}]) if args.chat else llm.encode_prompt(text)
    sampling = SamplingParams(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                              seed=args.seed)
    req = llm.request(prompt, max_tokens=args.max_tokens, sampling=sampling)
    out = llm.tokenizer.stream_decoder()
    for token in llm.stream(req):
        sys.stdout.write(out.feed(token))
        sys.stdout.flush()
    sys.stdout.write(out.flush())
    sys.stdout.write("\n")
    sys.stdout.flush()
    s = req.stats
    print(f"prompt tokens: {s.prompt_tokens}, prefill: {s.prefill_tps:.1f} tok/s, "
          f"generated tokens: {s.generated}, decode: {s.decode_tps:.1f} tok/s", file=sys.stderr)
    return 0


# ---- ditto tokenize ---------------------------------------------------------------

def cmd_tokenize(args: argparse.Namespace) -> int:
    from .gguf_model import load_model_file
    from .tokenizer import Tokenizer

    text = read_text_arg(None, args.file)
    tok = Tokenizer(load_model_file(model_store.resolve_model(args.model)).tokenizer)
    ids = tok.encode(text)
    if args.ids:
        print(json.dumps(ids))
    else:
        for i in ids:
            print(f"{i:6d} -> {tok.token_bytes(i)!r}")
    return 0


# ---- ditto rewrite -----------------------------------------------------------------

def cmd_rewrite(args: argparse.Namespace) -> int:
    from .batch import BatchRewrite
    from .files import remove_stale_temporaries, select_files
    from .journal import Journal
    from .progress import BatchProgress
    from .writeback import Committer

    selection = select_files(args.paths, include=args.include, exclude=args.exclude)
    for path, reason in selection.skipped:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    if not selection.files:
        print("ditto rewrite: no files to rewrite", file=sys.stderr)
        return 1
    if args.resume and not args.write:
        raise ValueError("--resume only makes sense with --write")
    if args.write:
        for stale in remove_stale_temporaries(selection.files):
            print(f"removed {stale}, left by an interrupted run", file=sys.stderr)
    journal = Journal(selection.roots[0], args.instruction) if args.write else None
    committer = Committer(args.write, journal, allow_read_only=args.allow_read_only)
    committer.begin(args.resume)
    options = dict(speculate=not args.no_speculate, drafter=args.drafter, max_tokens=args.max_tokens)
    with BatchProgress(len(selection.files), enabled=not args.quiet) as progress:
        on_result = lambda r: report_result(args, r, progress)  # noqa: E731
        if args.ray:
            from .batch_ray import run_on_ray

            started = time.perf_counter()
            results = run_on_ray(args.ray, selection.files, args.instruction, actors=args.actors,
                                 committer=committer, model_path=args.model, n_ctx=args.ctx,
                                 precision=args.precision, kv_type=args.kv_type,
                                 threads_per_actor=args.threads or 1,
                                 resume=args.resume,
                                 on_result=on_result, **options)
            totals = summarize(results, time.perf_counter() - started)
        else:
            llm = load_llm(args, n_seq=min(args.jobs, len(selection.files)))
            batch = BatchRewrite(llm, args.instruction, committer=committer, resume=args.resume,
                                 on_result=on_result, on_tokens=progress.tokens, **options)
            results = batch.run(selection.files)
            totals = batch.totals
    t = totals
    print(f"{len(results)} files in {t.seconds:.1f}s: generated {t.generated} tokens "
          f"({t.tokens_per_second:.1f} tok/s), drafted {t.drafted}, accepted {t.accepted} "
          f"({100 * t.acceptance_rate:.0f}%)", file=sys.stderr)
    return 0 if all(r.status.ok for r in results) else 1


def summarize(results, seconds: float):
    """Run totals from per-file stats (for backends that report per file)."""
    from .batch import BatchTotals

    t = BatchTotals(files=len(results), done=len(results))
    t.started -= seconds
    for r in results:
        t.generated += r.stats.get("generated", 0)
        t.drafted += r.stats.get("drafted", 0)
        t.accepted += r.stats.get("accepted", 0)
    return t


def report_result(args: argparse.Namespace, r, progress) -> None:
    import difflib

    progress.file_done(r)
    if args.json:
        out = {"file": str(r.path), "status": str(r.status), "stats": r.stats}
        out.update({"output": r.output} if r.output is not None else {"error": r.message})
        print(json.dumps(out), flush=True)
        return
    if not r.status.ok:
        print(f"{r.path}: {r.status}: {r.message}", file=sys.stderr)
    elif args.write:
        print(f"{r.path}: {r.status}", file=sys.stderr)
    elif r.output is not None and r.output != r.source:
        name = os.path.relpath(r.path)
        if name.startswith(".."):
            name = str(r.path).lstrip("/")  # outside the working directory: "a/abs/path"
        # Lines cut at LF only, endings kept: the diff shows every byte the write would change.
        sys.stdout.writelines(difflib.unified_diff(
            lf_lines(r.source), lf_lines(r.output), fromfile=f"a/{name}", tofile=f"b/{name}"))
        sys.stdout.flush()


def lf_lines(text: str) -> list[str]:
    lines = text.split("\n")
    return [line + "\n" for line in lines[:-1]] + ([lines[-1]] if lines[-1] else [])
