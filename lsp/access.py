"""Who may reach a listening server: a Unix socket only its owner can open,
checked again with the peer's credentials; a TCP token in a 0600 file."""
from __future__ import annotations

import errno
import os
import secrets
import socket
import stat
import struct
from collections.abc import Callable
from pathlib import Path

import platformdirs

TOKEN_ENV = "DITTO_TOKEN"


class AccessError(Exception):
    """A listener cannot be set up safely; the message says why."""


def _check_private_parent(path: Path) -> None:
    """Others must not be able to replace what we create in the directory."""
    parent = path.parent
    try:
        st = parent.stat()
    except FileNotFoundError:
        raise AccessError(f"directory {parent} does not exist") from None
    shared = st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    if shared and not st.st_mode & stat.S_ISVTX:
        raise AccessError(f"directory {parent} is writable by other users: choose a private directory")
    if st.st_uid not in (os.getuid(), 0):
        raise AccessError(f"directory {parent} belongs to another user")


def _make_room(path: Path, kind: str, is_kind: Callable[[int], bool],
               in_use: Callable[[Path], bool] = lambda path: False) -> None:
    """Clears `path` for a new `kind`: a stale one of ours is removed; anything
    else there (another user's file, one still in use) is refused."""
    _check_private_parent(path)
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if not (is_kind(st.st_mode) and st.st_uid == os.getuid()):
        raise AccessError(f"{path} exists and is not a {kind} of this user: refusing to replace it")
    if in_use(path):
        raise AccessError(f"another server is already listening on {path}")
    path.unlink()


def bind_unix_socket(path: Path) -> socket.socket:
    """A listening Unix socket at `path`, mode 0600."""
    _make_room(path, "socket", stat.S_ISSOCK, in_use=_listening)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o077)      # no moment where the socket is open to others
    try:
        sock.bind(str(path))
    except OSError:
        sock.close()
        raise
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.listen(8)
    return sock


def identity(path: Path) -> tuple[int, int]:
    st = path.lstat()
    return st.st_dev, st.st_ino


def remove_if_same(path: Path, was: tuple[int, int]) -> None:
    """Removes `path` if it is still the file it was (not one put there since)."""
    try:
        if identity(path) == was:
            path.unlink()
    except OSError:
        pass


def _listening(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
        return True
    except OSError as e:
        if e.errno in (errno.ECONNREFUSED, errno.ENOENT):
            return False
        raise AccessError(f"cannot check {path}: {e}") from None
    finally:
        probe.close()


def peer_uid(sock: socket.socket) -> int | None:
    """The uid of the process at the other end of a Unix socket (Linux); None if unknown."""
    if not hasattr(socket, "SO_PEERCRED"):
        return None
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid


def peer_is_owner(sock: socket.socket) -> bool:
    uid = peer_uid(sock)
    return uid is None or uid == os.getuid()


def default_token_file(port: int) -> Path:
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    base = Path(runtime) / "ditto" if runtime else Path(platformdirs.user_cache_dir("ditto"))
    return base / f"tcp-{port}.token"


def make_token() -> str:
    """The user's own token from the environment, else a fresh random one."""
    return os.environ.get(TOKEN_ENV) or secrets.token_urlsafe(32)


def write_token_file(path: Path, token: str) -> None:
    """Writes the token readable by its owner only, never through a symlink."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    _make_room(path, "file", stat.S_ISREG)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
