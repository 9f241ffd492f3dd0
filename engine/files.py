"""Which files a batch rewrite may touch.

Arguments are files, directories (everything below them) or glob patterns.
A file is taken only if it lies inside one of the roots (the arguments'
directories, resolved), is not reached through a symlink that leaves them,
is not ignored by a .gitignore, and is valid UTF-8 text below the size
limit; everything passed over is reported with the reason.
"""
from __future__ import annotations

import glob
import os
import re
import stat
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path

import pathspec

from .source_text import UnsafeText, decode

DEFAULT_MAX_BYTES = 64 * 1024
TEMP_SUFFIX = ".ditto-tmp"   # write_atomic's temporary files, never rewritten
SKIP_DIRS = {".git", ".hg", ".svn", "__pycache__", "node_modules", ".ditto", ".venv", "venv"}


@dataclass
class Selection:
    files: list[Path] = field(default_factory=list)          # resolved, sorted, unique
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    roots: list[Path] = field(default_factory=list)


class _IgnoreRules:
    """The .gitignore files from a root down to each directory, cached."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._specs: dict[Path, pathspec.PathSpec | None] = {}

    def _spec(self, directory: Path) -> pathspec.PathSpec | None:
        if directory not in self._specs:
            gi = directory / ".gitignore"
            spec = None
            if gi.is_file():
                with open(gi, encoding="utf-8", errors="replace") as f:
                    spec = pathspec.GitIgnoreSpec.from_lines(f)
            self._specs[directory] = spec
        return self._specs[directory]

    def ignored(self, path: Path) -> bool:
        rel_dirs = path.relative_to(self.root).parents
        for d in sorted(rel_dirs, key=lambda p: len(p.parts)):
            base = self.root / d
            spec = self._spec(base)
            if spec is None:
                continue
            rel = path.relative_to(base).as_posix()
            if spec.match_file(rel) or any(spec.match_file(p.as_posix() + "/")
                                           for p in Path(rel).parents if p != Path(".")):
                return True
        return False


def _is_text(path: Path, max_bytes: int) -> str | None:
    """None if the file can be rewritten, else the reason it can't."""
    try:
        size = path.stat().st_size
    except OSError as e:
        return f"unreadable: {e.strerror}"
    if size > max_bytes:
        return f"too large ({size} bytes > {max_bytes})"
    if size == 0:
        return "empty"
    try:
        data = path.read_bytes()
    except OSError as e:
        return f"unreadable: {e.strerror}"
    if b"\0" in data[:8192]:
        return "binary"
    try:
        decode(data)
    except UnsafeText as e:
        return str(e)
    return None


def _root_of(path: Path, roots: list[Path]) -> Path | None:
    """The root holding `path` (both lexical, absolute), if any."""
    for r in roots:
        if path == r or path.is_relative_to(r):
            return r
    return None


def _through_symlink(root: Path, path: Path) -> bool:
    """True if the root or any component from it down to `path` is a symlink."""
    parts = [path, *path.relative_to(root).parents]
    return any((root / p).is_symlink() for p in parts)


def _expand(arg: str) -> list[Path]:
    if any(ch in arg for ch in "*?["):
        return [Path(p) for p in sorted(glob.glob(arg, recursive=True))]
    return [Path(arg)]


def select_files(args: list[str], *, include: list[str] | None = None, exclude: list[str] | None = None,
                 max_bytes: int = DEFAULT_MAX_BYTES) -> Selection:
    sel = Selection()
    roots: list[Path] = []
    for arg in args:
        p = Path(arg.split("*")[0] or ".") if "*" in arg else Path(arg)
        base = p if p.is_dir() and not p.is_symlink() else p.parent
        roots.append(Path(os.path.abspath(base)))
    sel.roots = sorted(set(roots))
    rules = {r: _IgnoreRules(r) for r in sel.roots}
    seen: set[Path] = set()

    def consider(path: Path, explicit: bool) -> None:
        absolute = Path(os.path.abspath(path))
        root = _root_of(absolute, sel.roots)
        if root is None or _through_symlink(root, absolute):
            sel.skipped.append((str(path), "symlink or outside the given roots"))
            return
        real = absolute
        if real in seen:
            return
        name = real.name
        if name.endswith(TEMP_SUFFIX):
            return
        if include and not any(fnmatch(name, g) or fnmatch(str(path), g) for g in include):
            return
        if exclude and any(fnmatch(name, g) or fnmatch(str(path), g) for g in exclude):
            return
        if not explicit and (name.startswith(".") or rules[root].ignored(real)):
            return  # hidden and ignored files only when named explicitly
        reason = _is_text(real, max_bytes)
        if reason:
            sel.skipped.append((str(path), reason))
            return
        seen.add(real)
        sel.files.append(real)

    for arg in args:
        matches = _expand(arg)
        if not matches:
            sel.skipped.append((arg, "no such file or no match"))
        for m in matches:
            if m.is_dir() and not m.is_symlink():
                for dirpath, dirnames, filenames in os.walk(m):
                    dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS
                                         and not (Path(dirpath) / d).is_symlink())
                    for fn in sorted(filenames):
                        consider(Path(dirpath) / fn, explicit=False)
            elif m.exists() or m.is_symlink():
                consider(m, explicit=not any(ch in arg for ch in "*?["))
            else:
                sel.skipped.append((str(m), "no such file"))
    sel.files.sort()
    return sel


def temporary_prefix(path: Path) -> str:
    """The start of the name of write_atomic's temporary file for `path`
    (then 8 random characters from tempfile.mkstemp, then TEMP_SUFFIX)."""
    return f".{path.name}."


_TEMPORARY = re.compile(r"\.(.+)\.[a-z0-9_]{8}" + re.escape(TEMP_SUFFIX))


def remove_stale_temporaries(files: list[Path]) -> list[Path]:
    """Deletes the temporary files a killed run left beside the given files
    (the files they were meant to replace are intact: the rename never
    happened). Nothing else is touched: only regular files named as
    write_atomic names them for one of `files`, in those files' folders."""
    names_by_folder: dict[Path, set[str]] = {}
    for path in files:
        names_by_folder.setdefault(path.parent, set()).add(path.name)
    removed = []
    for folder, names in names_by_folder.items():
        try:
            entries = os.listdir(folder)
        except OSError:
            continue
        for entry in entries:
            match = _TEMPORARY.fullmatch(entry)
            candidate = folder / entry
            if match and match.group(1) in names and stat.S_ISREG(candidate.lstat().st_mode):
                candidate.unlink()
                removed.append(candidate)
    return removed
