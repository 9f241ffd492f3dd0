"""glibc's malloc told to keep big blocks out of the heap.

glibc serves blocks of 128 KiB and more with mmap and unmaps them on free,
but the first time it frees such a block it raises that threshold to the
block's size (up to 32 MiB). Loading a vocabulary frees multi-MB dicts and
lists; from then on blocks of that size come from the heap, and a freed one
stays resident. Measured on SmolLM2 (bench/engine.py's worker): the heap
held 27 MB at the end instead of 13, and the peak RSS was 6 MB higher.
Setting the threshold turns that adjustment off. Process-wide; glibc only.
"""
from __future__ import annotations

import ctypes

__all__ = ["keep_big_blocks_out_of_heap"]

_M_MMAP_THRESHOLD = -3       # glibc's malloc.h
_THRESHOLD = 128 * 1024      # glibc's default, before any adjustment


def keep_big_blocks_out_of_heap() -> bool:
    """Fixes glibc's mmap threshold at its default; False where there is no
    glibc mallopt (other C libraries, other systems): nothing changes."""
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # glibc's own symbol: musl also has a mallopt
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return mallopt(_M_MMAP_THRESHOLD, _THRESHOLD) == 1
