"""Reading the files of a rewrite run and putting their answers back on disk.

A file is read once, as bytes; it must be UTF-8 (engine/source_text.py
refuses the rest with the offending byte and line). Before a file is
replaced, ditto checks that it still holds exactly the bytes that were read
(else: a conflict, left alone) and that its mode lets the user write it (a
read-only file is refused unless the run allows it). The replacement is
atomic (temporary file beside it, fsync, rename) and keeps the file's mode,
and its owner and group where the process may set them. With a journal, a
"pending" entry is durable before the rename and a "written" one follows
it (engine/journal.py), so --resume knows a finished file by its bytes.
"""
from __future__ import annotations

import os
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .files import TEMP_SUFFIX, temporary_prefix
from .journal import Journal
from .rewrite import Status
from .source_text import UnsafeText, decode


@dataclass
class FileResult:
    path: Path
    status: Status
    message: str = ""
    source: str = ""                  # the file's text as read (its own line endings)
    output: str | None = None         # the answer in the file's own line endings
    stats: dict = field(default_factory=dict)
    tokens: list[int] = field(default_factory=list)   # the generated token ids


def read_only(st: os.stat_result) -> bool:
    """The mode bits deny this user writing. For root, who may write
    anything, the owner's bit: a 0444 file says "leave me alone" to root too."""
    uid = os.geteuid()
    if uid in (0, st.st_uid):
        return not st.st_mode & stat.S_IWUSR
    if st.st_gid == os.getegid() or st.st_gid in os.getgroups():
        return not st.st_mode & stat.S_IWGRP
    return not st.st_mode & stat.S_IWOTH


def write_atomic(path: Path, data: bytes) -> None:
    """Replaces a file with `data` at once: temporary file, fsync, rename.

    A crash at any moment leaves either the old file or the new one. The
    new file keeps the old one's permission bits, and its owner and group
    where the process may set them."""
    old = os.stat(path)
    fd, tmp = tempfile.mkstemp(prefix=temporary_prefix(path), suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            _keep_owner(f.fileno(), old)
            os.fchmod(f.fileno(), stat.S_IMODE(old.st_mode))   # after chown, which may clear set-id bits
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _keep_owner(fd: int, old: os.stat_result) -> None:
    for uid in (old.st_uid, -1):   # owner and group; else the group alone
        try:
            os.fchown(fd, uid, old.st_gid)
            return
        except PermissionError:
            continue


class Committer:
    """Opens the files of a run and turns finished rewrites into changes on
    disk (when writing): only if the file still holds the bytes the run
    read, atomically, journalled. Without `write` results pass through
    untouched (a dry run)."""

    def __init__(self, write: bool = False, journal: Journal | None = None, *,
                 allow_read_only: bool = False) -> None:
        self.write, self.journal, self.allow_read_only = write, journal, allow_read_only

    def begin(self, resume: bool) -> None:
        """Before the first file: the journal is checked (or created) when
        writing, and read when resuming (JournalError if it is unsafe)."""
        if self.write and self.journal is not None:
            self.journal.prepare()
            if resume:
                self.journal.load()

    def open(self, path: Path, resume: bool = False) -> str | FileResult:
        """The file's text, or the result that settles it without a rewrite
        (unreadable, not UTF-8, read-only, or finished by an earlier run)."""
        try:
            data = path.read_bytes()
            text = decode(data)
        except UnsafeText as e:
            return FileResult(path, Status.FAILED, str(e))
        except OSError as e:
            return FileResult(path, Status.FAILED, f"cannot read: {e.strerror or e}")
        if resume and self.journal is not None and self.journal.finished(path, data):
            return FileResult(path, Status.RESUMED, "finished by an earlier run", text, text)
        refusal = self._read_only_refusal(path)
        return FileResult(path, Status.FAILED, refusal, text) if refusal else text

    def _read_only_refusal(self, path: Path) -> str:
        if not self.write or self.allow_read_only or not read_only(os.stat(path)):
            return ""
        return "read-only: its mode does not let you write it; pass --allow-read-only to replace it anyway"

    def commit(self, r: FileResult) -> FileResult:
        if not self.write or r.status not in (Status.CHANGED, Status.UNCHANGED):
            return r
        source, result = r.source.encode("utf-8"), r.output.encode("utf-8")
        if r.status is Status.CHANGED:
            stop = self._why_not_replace(r.path, source)
            if stop is not None:
                r.status, r.message = stop
                return r
            if self.journal is not None:
                self.journal.record(r.path, "pending", source, result)
            try:
                write_atomic(r.path, result)
            except OSError as e:
                r.status, r.message = Status.FAILED, f"cannot write: {e.strerror or e}"
                return r
            r.status = Status.WRITTEN
        if self.journal is not None:
            self.journal.record(r.path, str(r.status), source, result)
        return r

    def _why_not_replace(self, path: Path, source: bytes) -> tuple[Status, str] | None:
        """The conflict check (the bytes the run read, exactly) and the read-only rule."""
        if not holds(path, source):
            return Status.CONFLICT, "changed on disk during the run (or unreadable now); not overwritten"
        refusal = self._read_only_refusal(path)
        return (Status.FAILED, refusal) if refusal else None


def holds(path: Path, data: bytes) -> bool:
    """The conflict check: the file still holds exactly `data`."""
    try:
        return path.read_bytes() == data
    except OSError:
        return False
