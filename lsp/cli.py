"""The `ditto` console entry point: engine.cli's commands plus `ditto serve`."""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from ..engine import cli as engine_cli


def cmd_serve(args: argparse.Namespace) -> int:
    from . import access, transport
    from .server import create_server

    logging.basicConfig(level=getattr(logging, args.log_level.upper()), stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # Command-line model options are the defaults; initializationOptions override them.
    overrides = {"model": args.model, "threads": args.threads, "ctx": args.ctx, "precision": args.precision,
                 "n_seq": args.n_seq}
    overrides = {k: v for k, v in overrides.items() if v is not None}

    def make_server():
        server = create_server()
        server.settings = dataclasses.replace(server.settings, **overrides)
        return server

    def announce(where: str) -> None:
        print(f"ditto: listening on {where}", file=sys.stderr, flush=True)

    if args.token_file is not None and args.tcp is None:
        print("ditto serve: --token-file goes with --tcp", file=sys.stderr)
        return 2
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


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"a port is a number from 0 to 65535, not {text!r}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = engine_cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    serve = sub.add_parser("serve", help="run the language server (stdio; or a Unix socket; or TCP on 127.0.0.1)")
    where = serve.add_mutually_exclusive_group()
    where.add_argument("--stdio", action="store_true", help="use stdin/stdout (the default)")
    where.add_argument("--socket", metavar="PATH", default=None,
                       help="listen on a Unix socket only this user can open (mode 0600)")
    where.add_argument("--tcp", type=_port, metavar="PORT", default=None,
                       help="listen on 127.0.0.1:PORT (0: any free port); clients must send the token")
    serve.add_argument("--token-file", metavar="PATH", default=None,
                       help="with --tcp: where to write the token (default: the user's runtime or cache "
                            "directory, tcp-PORT.token); $DITTO_TOKEN sets the token itself")
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
