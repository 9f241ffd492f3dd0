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
