"""A batch rewrite's journal: which files are finished, so --resume skips them.

One JSON object per line in `.ditto/journal.jsonl` under the first root,
appended and fsynced. Before a file is replaced, a "pending" entry records
the hashes of the bytes that were read and of the bytes about to be
written; after the rename a "written" entry follows. A resumed run counts a
file as finished when its current bytes hash to a result recorded for the
same instruction, pending or written: a run killed between the rename and
the journal write does not get the instruction applied twice.

The journal lies in the working tree, which anyone may have shipped: the
folder and the file are opened without following symlinks, must be the
user's own (and the file have no other name), and are created 0700 / 0600.
An entry that is not what ditto writes is refused with its line number;
only a torn last line (a run killed mid-write) is skipped.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import stat
import time
from pathlib import Path

FOLDER, NAME = ".ditto", "journal.jsonl"
FINISHED = ("pending", "written", "unchanged")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_FIELDS = {"instruction": str, "path": str, "status": str, "result_sha256": str}


class JournalError(ValueError):
    """The journal cannot be used safely; the message says why and what to do."""


def bytes_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _open_own(path: Path, flags: int, kind: str, folder_fd: int | None = None) -> int:
    """os.open without following a symlink at `path` (by its name inside
    `folder_fd` when given); the result must be the user's own `kind`
    ("folder" or "file"). FileNotFoundError passes through."""
    name = path.name if folder_fd is not None else path
    try:
        fd = os.open(name, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o600, dir_fd=folder_fd)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR, errno.ENXIO, errno.EISDIR):
            raise JournalError(f"{path} is a symlink or not a regular {kind}; ditto keeps its journal only in "
                               f"its own {kind}, never through a link: remove it") from None
        raise
    st = os.fstat(fd)
    if not (stat.S_ISDIR(st.st_mode) if kind == "folder" else stat.S_ISREG(st.st_mode)):
        problem = f"is not a {kind}"
    elif st.st_uid != os.geteuid():
        problem = "belongs to another user"
    elif kind == "file" and st.st_nlink != 1:
        problem = "has other names (hard links)"
    else:
        return fd
    os.close(fd)
    raise JournalError(f"{path} {problem}; ditto will not use it as its journal: remove it")


class Journal:
    def __init__(self, root: Path, instruction: str) -> None:
        self.folder = Path(root) / FOLDER
        self.path = self.folder / NAME
        self.instruction = bytes_hash(instruction.encode("utf-8"))
        self._results: dict[str, set[str]] = {}

    def _open(self, flags: int, create: bool) -> int:
        if create:
            try:
                os.mkdir(self.folder, 0o700)
            except FileExistsError:
                pass
        folder = _open_own(self.folder, os.O_RDONLY | os.O_DIRECTORY, "folder")
        try:
            return _open_own(self.path, flags, "file", folder_fd=folder)
        finally:
            os.close(folder)

    def prepare(self) -> None:
        """Creates the folder and the file (or checks them) before any file is written."""
        os.close(self._open(os.O_WRONLY | os.O_APPEND | os.O_CREAT, create=True))

    def load(self) -> None:
        """Reads the results recorded for this instruction (JournalError on a
        line that is not a journal entry)."""
        try:
            fd = self._open(os.O_RDONLY, create=False)
        except FileNotFoundError:
            return
        with os.fdopen(fd, "rb") as f:
            lines = f.read().split(b"\n")
        last = lines.pop()   # after the final newline: nothing, or a torn entry
        for number, line in enumerate(lines, 1):
            self._add(self._parse(line, number))
        try:
            self._add(self._parse(last, len(lines) + 1))
        except JournalError:
            pass     # a torn last line: its file counts as not finished

    def _parse(self, line: bytes, number: int) -> dict:
        where = f"line {number} of {self.path}"
        fresh = "move the journal away to start a fresh one"
        try:
            entry = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise JournalError(f"{where} is not JSON; {fresh}") from None
        if not isinstance(entry, dict):
            raise JournalError(f"{where} is not a journal entry (a JSON object); {fresh}")
        for key, kind in _FIELDS.items():
            if not isinstance(entry.get(key), kind):
                raise JournalError(f"{where} is not a journal entry (no {key}); {fresh}")
        if not _SHA256.fullmatch(entry["result_sha256"]):
            raise JournalError(f"{where} has a result_sha256 that is not a SHA-256 hash; {fresh}")
        return entry

    def _add(self, entry: dict) -> None:
        if entry["instruction"] == self.instruction and entry["status"] in FINISHED:
            self._results.setdefault(entry["path"], set()).add(entry["result_sha256"])

    def finished(self, path: Path, data: bytes) -> bool:
        """True if `data` (the file's current bytes) is a recorded result of this instruction."""
        return bytes_hash(data) in self._results.get(str(path), ())

    def record(self, path: Path, status: str, source: bytes, result: bytes) -> None:
        """Appends one entry and makes it durable before returning."""
        entry = {"time": time.time(), "instruction": self.instruction, "path": str(path), "status": status,
                 "source_sha256": bytes_hash(source), "result_sha256": bytes_hash(result)}
        fd = self._open(os.O_WRONLY | os.O_APPEND | os.O_CREAT, create=True)
        try:
            os.write(fd, (json.dumps(entry) + "\n").encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
