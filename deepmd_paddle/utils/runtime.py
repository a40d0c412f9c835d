"""Process-level settings that make Paddle fast on CPU; applied once when the package loads.

glibc's malloc serves blocks above its mmap threshold (128 kB, adapting up to 32 MB) with
fresh ``mmap`` calls and gives them back on free, so every large temporary tensor is paid
again in page faults: a float64 elementwise op on 20 MB costs 4-5 ns per element instead of
under 1 (measured with Paddle 3.3.1 here). Raising the mmap and trim thresholds keeps freed
blocks for reuse. Peak memory is unchanged; freed memory is returned to the system later.
``DEEPMD_PADDLE_NO_MALLOPT=1`` leaves malloc alone.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
_done = False


def tune_allocator() -> bool:
    """Raise glibc's mmap/trim thresholds; True when applied."""
    global _done
    if _done or os.environ.get("DEEPMD_PADDLE_NO_MALLOPT") == "1":
        return _done
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        ok = libc.mallopt(_M_MMAP_THRESHOLD, 1 << 30) == 1
        ok &= libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30) == 1
        ok &= libc.mallopt(_M_TOP_PAD, 64 << 20) == 1
    except (OSError, AttributeError):  # not glibc
        return False
    _done = bool(ok)
    return _done
