"""How clients reach the server: stdio (the default), a Unix socket, or TCP
on loopback. Every transport reads through framing.FrameReader.

On stdio the client is the process that started ditto: a broken message is
logged and skipped, and reading resumes at the next header. A socket may be
reached by others, so it is stricter: the peer must be the user (the
socket's owner, or the holder of the TCP token), its first message must be
`initialize`, any framing error closes the connection, and each connection
gets a fresh server (own workspace and documents). One session at a time:
a second concurrent client is refused with a message, and a client's
disconnect or `exit` ends only its own session.
"""
from __future__ import annotations

import asyncio
import hmac
import json
import logging
import queue
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pygls.io_ import StdoutWriter

from . import access
from .framing import MAX_MESSAGE_BYTES, FrameReader, FramingError, Oversized, error_frame
from .server import DittoServer

log = logging.getLogger(__name__)

INVALID_REQUEST = -32600
SERVER_NOT_INITIALIZED = -32002
MAX_INITIALIZE_BYTES = 1 << 20


async def next_body(frames: FrameReader, write: Callable[[bytes], Any], *, strict: bool) -> bytes | None:
    """The next message body, or None when the connection is to end. An
    oversized message is answered (if its id is known) and skipped; strict
    connections end on it and on any other framing error."""
    while True:
        try:
            return await frames.next_message()
        except Oversized as e:
            log.warning("%s", e)
            if e.msg_id is not None:
                write(error_frame(e.msg_id, INVALID_REQUEST, str(e)))
            if strict or not await frames.skip(e.length):
                return None
        except FramingError as e:
            log.warning("%s", e)
            if strict or not await frames.resync():
                return None


def dispatch(server: DittoServer, body: bytes) -> None:
    """Hands one message to pygls, as its own reader does."""
    protocol = server.protocol
    try:
        data = json.loads(body, object_hook=protocol.structure_message)
    except ValueError as e:   # not UTF-8, or not JSON
        protocol.refuse_unparsable(str(e)[:200])
        return
    try:
        protocol.handle_message(data)
    except Exception as e:
        log.warning("unable to handle a message: %r", e)
        server._report_server_error(e, type(e))


# ---- stdio ----------------------------------------------------------------------------------------------

class _BlockingChunks:
    """Reads a blocking stream on a daemon thread, one request at a time, so
    reading never runs ahead of the consumer and never holds up exit."""

    def __init__(self, stream) -> None:
        self._read = getattr(stream, "read1", stream.read)
        self._requests: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._serve, name="ditto-stdin", daemon=True).start()

    def _serve(self) -> None:
        while True:
            n, loop, future = self._requests.get()
            try:
                data = self._read(n)
            except (OSError, ValueError):
                data = b""
            try:
                loop.call_soon_threadsafe(lambda f=future, d=data: f.done() or f.set_result(d))
            except RuntimeError:  # the loop is closed
                return

    def read_some(self, n: int) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._requests.put((n, loop, future))
        return future


def serve_stdio(server: DittoServer, stdin=None, stdout=None) -> None:
    writer = StdoutWriter(stdout or sys.stdout.buffer)
    server.protocol.set_writer(writer)
    frames = FrameReader(_BlockingChunks(stdin or sys.stdin.buffer).read_some)

    async def pump() -> None:
        while (body := await next_body(frames, writer.write, strict=False)) is not None:
            dispatch(server, body)
    try:
        asyncio.run(pump())
    except BrokenPipeError:
        log.error("the client closed its end of the pipe")
    except (KeyboardInterrupt, SystemExit):   # `exit` ends the process, as in pygls
        pass


# ---- sockets ----------------------------------------------------------------------------------------------

class Gate:
    """A socket connection's first message must be an `initialize` request,
    carrying `initializationOptions.token` when a token is required (the
    token is removed before the settings are read)."""

    def __init__(self, token: str | None) -> None:
        self.token = token

    def refusal(self, message: Any) -> str | None:
        """Why the message is refused, or None if it opens a session."""
        if not isinstance(message, dict) or message.get("method") != "initialize" or "id" not in message:
            return "the first message on a connection must be an initialize request"
        if self.token is None:
            return None
        params = message.get("params")
        options = params.get("initializationOptions") if isinstance(params, dict) else None
        given = options.pop("token", None) if isinstance(options, dict) else None
        if not isinstance(given, str) or not hmac.compare_digest(given.encode(), self.token.encode()):
            return "initializationOptions.token is missing or wrong (see the token file named by `ditto serve --tcp`)"
        return None


class Listener:
    """Serves connections on a listening socket, one session at a time."""

    def __init__(self, make_server: Callable[[], DittoServer], *, token: str | None = None,
                 check_peer: bool = False) -> None:
        self._make_server = make_server
        self._gate = Gate(token)
        self._check_peer = check_peer
        self._session: DittoServer | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._serve(reader, writer)
        finally:
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._check_peer and not access.peer_is_owner(writer.get_extra_info("socket")):
            log.warning("refused a connection from another user")
            return
        # Until the peer is admitted, it cannot make the server hold more than an initialize needs.
        frames = FrameReader(reader.read, max_message=MAX_INITIALIZE_BYTES)
        initialize = await self._admit(frames, writer)
        if initialize is None:
            return
        frames.max_message = MAX_MESSAGE_BYTES
        self._session = server = self._make_server()
        server.protocol.set_writer(writer)
        try:
            dispatch(server, json.dumps(initialize).encode())
            while (body := await next_body(frames, writer.write, strict=True)) is not None:
                dispatch(server, body)
        except SystemExit:   # `exit` ends this client's session, not the server
            pass
        finally:
            end_session(server)
            self._session = None
            log.info("a client's session ended")

    async def _admit(self, frames: FrameReader, writer: asyncio.StreamWriter) -> dict | None:
        """The connection's first message if it may open a session; else None,
        after telling the peer why when its message had an id."""
        body = await next_body(frames, writer.write, strict=True)
        if body is None:
            return None
        try:
            first = json.loads(body)
        except ValueError:
            log.warning("refused a connection whose first message is not JSON")
            return None
        reason = self._gate.refusal(first)
        if reason is None and self._session is not None:
            reason = "ditto is serving another client: one editor per server (start another with its own socket)"
        if reason is None:
            return first
        log.warning("refused a connection: %s", reason)
        msg_id = first.get("id") if isinstance(first, dict) else None
        if isinstance(msg_id, (int, str)) and not isinstance(msg_id, bool):
            writer.write(error_frame(msg_id, SERVER_NOT_INITIALIZED, reason))
        return None


def end_session(server: DittoServer) -> None:
    """Stops what a departed client's session was still doing."""
    server.stop_all("the client disconnected")


def serve_socket(listener: Listener, start: Callable[[Callable], Any], announce: Callable[[list], None]) -> None:
    """Runs `start(handle)` (an asyncio.start_server-like coroutine) until
    SIGTERM or SIGINT, then returns so the caller can clean up."""
    async def main() -> None:
        stop = asyncio.get_running_loop().create_future()
        for sig in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
        async with await start(listener.handle) as server:
            announce(server.sockets)
            await stop
    asyncio.run(main())


def serve_unix(path: Path, make_server: Callable[[], DittoServer], announce: Callable[[str], None]) -> None:
    """A Unix socket only this user can open; removed again on exit."""
    sock = access.bind_unix_socket(path)
    bound = access.identity(path)
    try:
        serve_socket(Listener(make_server, check_peer=True),
                     lambda handle: asyncio.start_unix_server(handle, sock=sock),
                     lambda sockets: announce(str(path)))
    finally:
        access.remove_if_same(path, bound)


def serve_tcp(port: int, token_file: Path | None, make_server: Callable[[], DittoServer],
              announce: Callable[[str], None]) -> None:
    """TCP on 127.0.0.1 only, and only for clients that present the token."""
    token = access.make_token()
    listener = Listener(make_server, token=token)
    written: list[tuple[Path, tuple[int, int]]] = []

    def ready(sockets) -> None:
        bound_port = sockets[0].getsockname()[1]
        path = token_file or access.default_token_file(bound_port)
        access.write_token_file(path, token)
        written.append((path, access.identity(path)))
        announce(f"127.0.0.1:{bound_port} (token in {path})")
    try:
        serve_socket(listener, lambda handle: asyncio.start_server(handle, "127.0.0.1", port), ready)
    finally:
        for path, was in written:
            access.remove_if_same(path, was)
