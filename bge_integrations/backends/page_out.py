"""Hand back the resident pages of a read-only file mapping (Linux; a no-op elsewhere).

OpenVINO maps a model's weights file and copies every weight it multiplies with into its own
layout, at compile time and again at the first inference; the mapped originals then stay
resident although only a few of them (embedding rows) are read again. Paging them out lowers
resident memory by the size of the weights file; a page read later is read back from the file,
so nothing changes but memory. Only mappings without write permission are touched.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from pathlib import Path

__all__ = ["page_out"]

#: madvise(2) advice: reclaim these pages now (Linux 5.4+); clean file pages are dropped
_MADV_PAGEOUT = 21


def _read_only_mappings(path: Path) -> list[tuple[int, int]]:
    """``(start, length)`` of this process's mappings of ``path`` that cannot be written."""
    target = os.path.realpath(path)
    ranges = []
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            for line in maps:
                fields = line.split(maxsplit=5)
                if len(fields) == 6 and fields[5].rstrip("\n") == target \
                        and "w" not in fields[1]:
                    start, end = (int(x, 16) for x in fields[0].split("-"))
                    ranges.append((start, end - start))
    except OSError:
        return []
    return ranges


def page_out(path: Path) -> int:
    """Ask the kernel to reclaim the resident pages of read-only mappings of ``path``;
    returns the bytes advised (0 off Linux, without such mappings or when refused)."""
    if not sys.platform.startswith("linux"):
        return 0
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    advised = 0
    for start, length in _read_only_mappings(path):
        if libc.madvise(start, length, _MADV_PAGEOUT) == 0:  # EINVAL before Linux 5.4
            advised += length
    return advised
