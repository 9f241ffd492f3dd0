"""The `ditto` console entry point: engine.cli's commands plus `ditto serve`."""
from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from ..engine import cli as engine_cli


def cmd_serve(args: argparse.Namespace) -> int:
    from .server import create_server

    logging.basicConfig(level=getattr(logging, args.log_level.upper()), stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    server = create_server()
    # Command-line model options are the defaults; initializationOptions override them.
    import dataclasses

    overrides = {"model": args.model, "threads": args.threads, "ctx": args.ctx, "precision": args.precision}
    if args.n_seq is not None:
        overrides["n_seq"] = args.n_seq
    server.settings = dataclasses.replace(server.settings, **{k: v for k, v in overrides.items() if v is not None})
    if args.tcp is not None:
        server.start_tcp("127.0.0.1", args.tcp)   # loopback only
    else:
        server.start_io()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = engine_cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    serve = sub.add_parser("serve", help="run the language server (stdio, or --tcp PORT on 127.0.0.1)")
    serve.add_argument("--tcp", type=int, metavar="PORT", default=None, help="listen on 127.0.0.1:PORT")
    serve.add_argument("--stdio", action="store_true", help="use stdin/stdout (the default)")
    serve.add_argument("--model", metavar="PATH", help="GGUF model file (default: the embedded SmolLM2-135M)")
    serve.add_argument("--threads", type=int, default=None, help="threads (default: one per physical core)")
    serve.add_argument("--ctx", type=int, default=None, help="context size in tokens (default: 4096)")
    serve.add_argument("--precision", choices=("exact", "fast"), default=None,
                       help="kernel precision (default: exact)")
    serve.add_argument("--n-seq", type=int, default=None, help="sequence slots (default: 4)")
    serve.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    serve.set_defaults(func=cmd_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return engine_cli.run(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
