"""Raw-socket and raw-pipe clients of `ditto serve` (test_transport*.py)."""
from __future__ import annotations

import json
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

TIMEOUT = 60
SERVE = [sys.executable, "-m", "ditto.lsp.cli", "serve"]
HTTP_POST = (b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n"
             b"Content-Length: 40\r\n\r\n" + b'{"jsonrpc": "2.0", "method": "exit"}    ')


def frame(message: dict | bytes) -> bytes:
    body = message if isinstance(message, bytes) else json.dumps(message).encode()
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


def initialize(msg_id, options: dict | None = None) -> bytes:
    params = {"processId": None, "rootUri": None, "capabilities": {}}
    if options is not None:
        params["initializationOptions"] = options
    return frame({"jsonrpc": "2.0", "id": msg_id, "method": "initialize", "params": params})


def probe(msg_id) -> bytes:
    """A request any live server answers (with MethodNotFound) without the model."""
    return frame({"jsonrpc": "2.0", "id": msg_id, "method": "ditto/probe", "params": {}})


class Peer:
    """The client end of one connection: raw bytes out, framed messages in."""

    def __init__(self, read_fd: int, write) -> None:
        self._fd = read_fd
        self._write = write
        self._buf = b""

    def send(self, data: bytes) -> None:
        self._write(data)

    def _fill(self, deadline: float) -> bool:
        ready, _, _ = select.select([self._fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            raise TimeoutError("no answer from the server")
        try:
            data = os.read(self._fd, 1 << 16)
        except ConnectionResetError:
            data = b""
        self._buf += data
        return bool(data)

    def message(self) -> dict | None:
        """The next message from the server; None once it closed the connection."""
        deadline = time.monotonic() + TIMEOUT
        while b"\r\n\r\n" not in self._buf:
            if not self._fill(deadline):
                return None
        head, _, rest = self._buf.partition(b"\r\n\r\n")
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length")))
        while len(rest) < length:
            if not self._fill(deadline):
                return None
            head, _, rest = self._buf.partition(b"\r\n\r\n")
        self._buf = rest[length:]
        return json.loads(rest[:length])

    def response(self, msg_id) -> dict | None:
        """The response to `msg_id`, skipping notifications and the id-null errors
        that answer bodies which were not messages; None if the connection closed first."""
        while (msg := self.message()) is not None:
            if "method" not in msg and msg.get("id") is not None:
                assert msg.get("id") == msg_id, msg
                return msg
        return None

    def closed(self) -> bool:
        """True once the server closed the connection (nothing else may arrive first)."""
        msg = self.message()
        assert msg is None or "method" in msg, f"expected the connection to close, got {msg}"
        return msg is None or self.closed()


class Listening:
    """A `ditto serve --socket/--tcp` process and how to reach it."""

    def __init__(self, args: list[str], log: Path, env: dict | None = None) -> None:
        self.log = log
        self._log_file = open(log, "wb")
        self.proc = subprocess.Popen(SERVE + args + ["--log-level", "info"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=self._log_file, env=env)
        self.where = self.wait_for("ditto: listening on ")
        self._sockets: list[socket.socket] = []

    def wait_for(self, marker: str) -> str:
        """The rest of the first log line that contains `marker`, once there is one."""
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            for line in self.log.read_text().splitlines():
                if marker in line:
                    return line.split(marker, 1)[1]
            assert self.proc.poll() is None, self.log.read_text()
            time.sleep(0.05)   # polling for an event, with a generous deadline
        raise TimeoutError(self.log.read_text())

    def connect(self) -> Peer:
        if self.where.startswith("127.0.0.1:"):
            sock = socket.create_connection(("127.0.0.1", int(self.where.split(":")[1].split()[0])), TIMEOUT)
        else:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(self.where)
        self._sockets.append(sock)
        return Peer(sock.fileno(), sock.sendall)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        for sock in self._sockets:
            sock.close()
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(TIMEOUT)
        self._log_file.close()


@pytest.fixture
def private_dir():
    # Short (a socket path has about 100 bytes) and traversable by other users.
    path = Path(tempfile.mkdtemp(prefix="ditto-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


@pytest.fixture
def unix_server(private_dir):
    server = Listening(["--socket", str(private_dir / "s")], private_dir / "log")
    yield server
    server.stop()
