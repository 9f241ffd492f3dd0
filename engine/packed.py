"""Vocabulary-sized sequences of strings packed into one buffer.

A vocabulary is 50k-262k short strings. As Python objects each costs 40-60
bytes of header plus a pointer in a list (Gemma's 262k tokens, their bytes
and their scores took ~80 MB this way); packed, a string costs its bytes
plus an 8-byte offset. Items become Python objects only when asked for.
"""
from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator, Sequence
from itertools import accumulate, islice
from typing import overload

import numpy as np

__all__ = ["PackedBytes", "PackedStrings", "InvalidItem"]


class PackedBytes(Sequence[bytes]):
    """An immutable sequence of bytes objects: item i is blob[off[i]:off[i+1]]."""

    __slots__ = ("_blob", "_off")

    def __init__(self, items: Iterable[bytes]) -> None:
        items = items if isinstance(items, (list, tuple)) else list(items)
        self._blob = b"".join(items)
        self._off = array("q", accumulate(map(len, items), initial=0))

    @classmethod
    def from_buffer(cls, blob: bytes, offsets) -> "PackedBytes":
        """Items blob[offsets[i]:offsets[i+1]]; offsets start at 0, end at
        len(blob) and never decrease (the caller built them so)."""
        out = cls.__new__(cls)
        out._blob = blob
        out._off = array("q", np.ascontiguousarray(offsets, dtype=np.int64).tobytes())
        return out

    def __len__(self) -> int:
        return len(self._off) - 1

    @overload
    def __getitem__(self, i: int) -> bytes: ...
    @overload
    def __getitem__(self, i: slice) -> list: ...

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        n = len(self._off) - 1
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"index {i} out of range for {n} items")
        return self._item(self._blob[self._off[i]:self._off[i + 1]])

    def _item(self, raw: bytes):
        return raw

    def _raw_items(self) -> Iterator[bytes]:
        # all in C: a vocabulary is iterated once per load
        return map(self._blob.__getitem__, map(slice, self._off, islice(self._off, 1, None)))

    def __iter__(self) -> Iterator:
        return self._raw_items()

    def join(self, ids: Iterable[int]) -> bytes:
        """b"".join(self[i] for i in ids) without a method call per item;
        ids must lie in [0, len) (one past the end raises IndexError)."""
        blob, off = self._blob, self._off
        return b"".join([blob[off[i]:off[i + 1]] for i in ids])

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, (str, bytes)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} items, {len(self._blob)} bytes)"


class PackedStrings(PackedBytes):
    """An immutable sequence of str, stored as UTF-8."""

    __slots__ = ()

    def __init__(self, items: Iterable[str]) -> None:
        super().__init__([s.encode("utf-8", "surrogatepass") for s in items])

    @classmethod
    def from_utf8(cls, raw: PackedBytes) -> "PackedStrings":
        """The same buffer read as strings. Raises InvalidItem unless every
        item is UTF-8: checked in one pass over the buffer (valid as a whole,
        and no item starts inside a character)."""
        blob, off = raw._blob, raw._off
        try:
            blob.decode("utf-8")
            ok = not (_starts(off, blob) & 0xC0 == 0x80).any()
        except UnicodeDecodeError:
            ok = False
        if not ok:
            raise InvalidItem(next(i for i, b in enumerate(raw) if not _is_utf8(b)))
        return cls.from_buffer(blob, off)

    def _item(self, raw: bytes) -> str:
        return raw.decode("utf-8", "surrogatepass")

    def __iter__(self) -> Iterator[str]:
        """Decodes the buffer once and slices it (a load iterates over the
        whole vocabulary; a decode per item took twice as long)."""
        text = self._blob.decode("utf-8", "surrogatepass")
        arr = np.frombuffer(self._blob, dtype=np.uint8)
        # character index of every byte offset: count the bytes that start a character
        chars = np.concatenate(([0], np.cumsum((arr & 0xC0) != 0x80)))[np.frombuffer(self._off, np.int64)]
        return map(text.__getitem__, map(slice, chars[:-1].tolist(), chars[1:].tolist()))


class InvalidItem(ValueError):
    """An item that is not valid UTF-8; `index` says which."""

    def __init__(self, index: int) -> None:
        super().__init__(f"item {index} is not valid UTF-8")
        self.index = index


def _starts(off: array, blob: bytes) -> np.ndarray:
    """The first byte of every non-empty item."""
    o = np.frombuffer(off, dtype=np.int64)[:-1]
    return np.frombuffer(blob, dtype=np.uint8)[o[o < len(blob)]] if len(blob) else np.zeros(0, np.uint8)


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
