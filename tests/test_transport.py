"""How clients reach the server, byte for byte: bounded framing on every
transport (stdio, a Unix socket, TCP), and who may drive a listening server.

These run the real `ditto serve` process but never load the model: nothing
here sends `initialized`, so each test is about the transport alone."""
from __future__ import annotations

import os
import pwd
import socket
import stat
import subprocess
from pathlib import Path

import pytest

from ditto.lsp.framing import MAX_MESSAGE_BYTES
from transport_helpers import (HTTP_POST, SERVE, TIMEOUT, Listening, Peer, frame, initialize, private_dir,  # noqa: F401
                               probe, unix_server)


# ---- stdio -----------------------------------------------------------------------------------------------

@pytest.fixture
def stdio():
    proc = subprocess.Popen(SERVE, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def write(data: bytes) -> None:
        proc.stdin.write(data)
        proc.stdin.flush()
    yield proc, Peer(proc.stdout.fileno(), write)
    if proc.poll() is None:
        proc.kill()
    proc.wait(TIMEOUT)


def assert_exits_cleanly(proc) -> None:
    proc.stdin.close()
    assert proc.wait(TIMEOUT) == 0
    err = proc.stderr.read().decode()
    assert "Traceback" not in err and "MemoryError" not in err, err


def test_huge_content_length_is_answered_and_the_server_survives(stdio):
    proc, peer = stdio
    peer.send(b'Content-Length: 10000000000000\r\n\r\n{"jsonrpc": "2.0", "id": 7, "method": "initialize", '
              b'"params": {"capabilities": {}, "initializationOptions": {"pad": "')
    reply = peer.response(7)
    assert reply is not None, "the server died"
    assert reply["error"]["code"] == -32600
    assert f"limit of {MAX_MESSAGE_BYTES} bytes" in reply["error"]["message"]
    assert proc.poll() is None
    assert_exits_cleanly(proc)


def test_oversized_message_is_skipped_and_the_next_one_served(stdio):
    proc, peer = stdio
    head = b'{"jsonrpc": "2.0", "id": "big", "method": "initialize", "params": {"capabilities": {}, "x": "'
    body = head + b"a" * (MAX_MESSAGE_BYTES + 1 - len(head) - 3) + b'"}}'
    assert len(body) == MAX_MESSAGE_BYTES + 1
    peer.send(frame(body) + initialize(2))
    assert "limit" in peer.response("big")["error"]["message"]
    assert "result" in peer.response(2)
    assert_exits_cleanly(proc)


MALFORMED = {
    "negative length": b"Content-Length: -5\r\n\r\n{}",
    "non-numeric length": b"Content-Length: abc\r\n\r\n{}",
    "length in exponent form": b"Content-Length: 1e3\r\n\r\n{}",
    "length of 30 digits": b"Content-Length: 999999999999999999999999999999\r\n\r\n{}",
    "two lengths": b"Content-Length: 2\r\nContent-Length: 900\r\n\r\n{}",
    "no blank line": b'Content-Length: 20\r\n{"jsonrpc": "2.0"} ',
    "no length": b"Content-Type: application/vscode-jsonrpc\r\n\r\n{}",
    "unknown header": b"X-Forwarded-For: 1.2.3.4\r\nContent-Length: 2\r\n\r\n{}",
    "LF line endings": b"Content-Length: 2\n\n{}",
    "too many header lines": b"Content-Type: a\r\n" * 50 + b"Content-Length: 2\r\n\r\n{}",
    "8 MB header line": b"Content-Type: " + b"a" * (8 << 20) + b"\r\nContent-Length: 2\r\n\r\n{}",
    "HTTP request": b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
}


def test_malformed_headers_cost_only_their_own_message_on_stdio(stdio):
    proc, peer = stdio
    for i, (name, data) in enumerate(MALFORMED.items()):
        peer.send(data + probe(i))
        reply = peer.response(i)
        assert reply is not None, f"the server died after: {name}"
        assert reply["error"]["code"] == -32601, (name, reply)
    assert_exits_cleanly(proc)


# ---- listening servers ------------------------------------------------------------------------------------------

@pytest.fixture
def tcp_server(private_dir):
    server = Listening(["--tcp", "0", "--token-file", str(private_dir / "token")], private_dir / "log")
    server.token = (private_dir / "token").read_text().strip()
    yield server
    server.stop()


@pytest.fixture(params=["unix", "tcp"])
def listening(request):
    server = request.getfixturevalue(f"{request.param}_server")
    server.options = {"token": server.token} if request.param == "tcp" else {}
    return server


def test_unix_socket_is_private(unix_server, private_dir):
    st = (private_dir / "s").lstat()
    assert stat.S_ISSOCK(st.st_mode) and st.st_uid == os.getuid()
    assert stat.S_IMODE(st.st_mode) == 0o600
    unix_server.stop()
    assert not (private_dir / "s").exists()     # removed when the server stops


def test_listeners_refuse_clearly_what_they_cannot_do_safely(private_dir):
    target = private_dir / "not-a-socket"
    target.write_text("precious")
    (private_dir / "link").symlink_to(target)
    shared = private_dir / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    taken = socket.create_server(("127.0.0.1", 0))
    for args, reason in ((["--tcp", str(taken.getsockname()[1])], "address already in use"),
                         (["--socket", str(private_dir / ("x" * 120))], "path too long"),
                         (["--socket", str(target)], "not a socket"),
                         (["--socket", str(private_dir / "link")], "not a socket"),
                         (["--socket", str(shared / "s")], "writable by other users"),
                         (["--tcp", "0", "--token-file", str(private_dir / "link")], "not a file"),
                         (["--tcp", "0", "--token-file", str(shared / "token")], "writable by other users")):
        done = subprocess.run(SERVE + args, capture_output=True, text=True, timeout=TIMEOUT)
        assert done.returncode == 2 and reason in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr
    assert target.read_text() == "precious"
    taken.close()


def test_a_second_server_on_a_live_socket_is_refused(unix_server, private_dir):
    done = subprocess.run(SERVE + ["--socket", str(private_dir / "s")], capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert done.returncode == 2 and "already listening" in done.stderr, done.stderr
    peer = unix_server.connect()
    peer.send(initialize(1))
    assert "result" in peer.response(1)


def connect_as_nobody(path: Path) -> str:
    """Connects from a child process running as `nobody`: what it got."""
    nobody = pwd.getpwnam("nobody")
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: only system calls, then _exit
        outcome = "answered"
        try:
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(TIMEOUT)
            sock.connect(str(path))
            sock.sendall(initialize(1))
            if sock.recv(1 << 16) == b"":
                outcome = "closed"
        except PermissionError:
            outcome = "permission denied"
        except (BrokenPipeError, ConnectionResetError):   # closed before it finished sending
            outcome = "closed"
        except BaseException as e:
            outcome = f"error {e!r}"
        os.write(write_end, outcome.encode())
        os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    with os.fdopen(read_end, "rb") as f:
        return f.read().decode()


@pytest.mark.skipif(os.geteuid() != 0, reason="running a client as another user needs root")
def test_unix_socket_refuses_another_user(unix_server, private_dir):
    path = private_dir / "s"
    assert connect_as_nobody(path) == "permission denied"
    # Even if the socket's mode were widened, the peer's uid is checked.
    path.chmod(0o666)
    assert connect_as_nobody(path) == "closed"
    assert "refused a connection from another user" in unix_server.log.read_text()
    peer = unix_server.connect()
    peer.send(initialize(1))
    assert "result" in peer.response(1)


def test_http_request_is_refused(listening):
    """A web page's simple POST (its body an `exit`) is never read as JSON-RPC."""
    web = listening.connect()
    web.send(HTTP_POST)
    assert web.closed()
    assert listening.alive()
    peer = listening.connect()
    peer.send(initialize(1, listening.options))
    assert "result" in peer.response(1)


@pytest.mark.parametrize("attempt", [
    initialize(1),
    initialize(1, {"model": "/etc/passwd"}),
    initialize(1, {"token": "guess"}),
    initialize(1, {"token": None}),
    frame({"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {}}) + initialize(1),
    frame({"jsonrpc": "2.0", "method": "exit"}),
    probe(1),
], ids=["no options", "no token", "wrong token", "null token", "didOpen first", "exit first", "probe first"])
def test_tcp_needs_the_token_in_initialize(tcp_server, private_dir, attempt):
    token_file = private_dir / "token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    peer = tcp_server.connect()
    peer.send(attempt)
    reply = peer.message()
    if reply is not None:       # an initialize request is told why
        assert reply["id"] == 1 and reply["error"]["code"] == -32002, reply
        assert "token" in reply["error"]["message"] or "first message" in reply["error"]["message"]
    assert peer.closed()
    assert tcp_server.alive()
    user = tcp_server.connect()
    user.send(initialize(2, {"token": tcp_server.token, "maxTokens": 8}))
    assert "result" in user.response(2)
    assert "unknown ditto setting 'token'" not in tcp_server.log.read_text()


def test_tcp_token_can_be_the_users_own_and_its_file_goes_with_the_server(private_dir):
    token_file = private_dir / "token"
    server = Listening(["--tcp", "0", "--token-file", str(token_file)], private_dir / "log",
                       env=dict(os.environ, DITTO_TOKEN="the-users-own-token"))
    try:
        assert token_file.read_text().strip() == "the-users-own-token"
        peer = server.connect()
        peer.send(initialize(1, {"token": "the-users-own-token"}))
        assert "result" in peer.response(1)
    finally:
        server.stop()
    assert not token_file.exists()


def test_a_client_not_yet_admitted_cannot_make_the_server_hold_a_large_message(tcp_server):
    """Before its initialize is accepted, a peer's message is capped far below
    the limit for documents: refused from its header, without reading the body."""
    peer = tcp_server.connect()
    peer.send(b'Content-Length: 2000000\r\n\r\n{"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {')
    reply = peer.message()
    assert reply["id"] == 1 and "larger than the limit of 1048576 bytes" in reply["error"]["message"]
    assert peer.closed()
    assert tcp_server.alive()


def test_a_second_client_is_refused_and_the_first_keeps_its_session(listening):
    first = listening.connect()
    first.send(initialize(1, listening.options))
    assert "result" in first.response(1)
    second = listening.connect()
    second.send(initialize(1, listening.options))
    reply = second.response(1)
    assert "another client" in reply["error"]["message"]
    assert second.closed()
    first.send(probe(2))
    assert first.response(2)["error"]["code"] == -32601


def open_document(uri: str) -> bytes:
    return frame({"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {"textDocument": {
        "uri": uri, "languageId": "python", "version": 1, "text": "x = 1\n"}}})


def completion_at(uri: str, msg_id) -> bytes:
    return frame({"jsonrpc": "2.0", "id": msg_id, "method": "textDocument/completion", "params": {
        "textDocument": {"uri": uri}, "position": {"line": 5, "character": 0}}})


@pytest.mark.parametrize("leave", ["exit", "disconnect"])
def test_a_clients_departure_ends_only_its_own_session(listening, leave):
    """After a client exits or drops its connection, the server goes on, and
    the next client gets a fresh session that does not see the first one's
    documents."""
    uri = "file:///first-client.py"
    first = listening.connect()
    first.send(initialize(1, listening.options) + open_document(uri) + completion_at(uri, 2))
    assert "result" in first.response(1)
    assert "unknown document" not in first.response(2)["error"]["message"]   # open in this session
    if leave == "exit":
        first.send(frame({"jsonrpc": "2.0", "id": 3, "method": "shutdown"})
                   + frame({"jsonrpc": "2.0", "method": "exit"}))
        assert first.response(3) is not None
        assert first.closed()
    else:
        listening._sockets.pop().close()
        listening.wait_for("a client's session ended")
    assert listening.alive()
    nxt = listening.connect()
    nxt.send(initialize(1, listening.options) + completion_at(uri, 2))
    assert "result" in nxt.response(1)
    assert "unknown document" in nxt.response(2)["error"]["message"]
