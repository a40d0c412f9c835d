"""Process-level settings, in one place: malloc and OpenMP tuning applied once when the package
loads, and the thread counts of Paddle and of the C++ kernels.

glibc's malloc serves blocks above its mmap threshold (128 kB, adapting up to 32 MB) with
fresh ``mmap`` calls and gives them back on free, so every large temporary tensor is paid
again in page faults: a float64 elementwise op on 20 MB costs 4-5 ns per element instead of
under 1 (measured with Paddle 3.3.1 here). Raising the mmap and trim thresholds keeps freed
blocks for reuse. Peak memory is unchanged; freed memory is returned to the system later.
``DEEPMD_PADDLE_NO_MALLOPT=1`` leaves malloc alone.

Paddle's MKL runs on Intel's OpenMP runtime, whose idle threads spin for 200 ms
(``KMP_BLOCKTIME``) after every parallel region; between two MKL calls they hold the cores that
our operators' (GNU OpenMP) threads need. Measured on the 2-core machine under load: a water
training step took 1.1-1.2 s instead of 0.44-0.49 s, and 60 % more CPU time. ``quiet_openmp``
sets ``KMP_BLOCKTIME=0`` unless the user chose it (or ``OMP_WAIT_POLICY``); the runtime reads it
when its first parallel region starts, so it must run before Paddle's first matrix product.
GNU OpenMP's idle threads spin too (``GOMP_SPINCOUNT``); libgomp reads it when it is loaded,
with Paddle, so it is set only when the package is imported before Paddle.

``mkl_on_amd`` lets MKL use its AVX2 kernels on AMD CPUs (see there).

``quiet_framework`` silences Paddle's messages that tell a user of this package nothing: the
"No ccache found" UserWarning (every command), dynamic-to-static's "Tensor do not have 'place'
interface" UserWarnings and C++ (glog) warnings such as "PIR not support input out tensor" while
freezing (``GLOG_minloglevel=2``: errors still print; a value the user set is kept), and the
INFO lines of Paddle's extension builder, which also reached the root logger a second time.
Every other warning, ours and Paddle's, still shows.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys
import warnings

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3


def quiet_openmp() -> None:
    """Idle OpenMP threads sleep at once instead of spinning (see the docstring): Intel's
    runtime (MKL) always; GNU's (our operators) when Paddle, which loads it, is not imported yet."""
    if "OMP_WAIT_POLICY" in os.environ:
        return
    os.environ.setdefault("KMP_BLOCKTIME", "0")
    if "paddle" not in sys.modules:
        os.environ.setdefault("GOMP_SPINCOUNT", "0")


def mkl_on_amd() -> bool:
    """On AMD CPUs, ask MKL for its AVX2 code (``MKL_DEBUG_CPU_TYPE=5``) unless the user set it.

    The MKL that Paddle ships picks its kernels by CPU vendor: on an AMD EPYC (AVX2, Zen) it ran
    float32 matrix products on a generic path at float64's rate (17-18 GFLOP/s a thread against
    OpenBLAS's 35-37 in numpy, measured with ``benchmarks/bench_gemm.py``); with this setting at
    32-36, and float64 unchanged. Intel CPUs are left alone (the setting would cap them at AVX2).
    MKL reads it when it first runs, so this is done when the package is imported. True when set."""
    if "MKL_DEBUG_CPU_TYPE" in os.environ or _cpu_vendor() != "AuthenticAMD" or "avx2" not in _cpu_flags():
        return False
    os.environ["MKL_DEBUG_CPU_TYPE"] = "5"
    return True


def _cpuinfo_field(name: str) -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == name:
                    return value.strip()
    except OSError:  # not Linux
        pass
    return ""


def _cpu_vendor() -> str:
    return _cpuinfo_field("vendor_id")


def _cpu_flags() -> set:
    return set(_cpuinfo_field("flags").split())


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


_NOISE = ("No ccache found", "Tensor do not have 'place' interface")


def quiet_framework() -> None:
    """Drop Paddle's messages that carry no information for our users (see the docstring)."""
    for text in _NOISE:
        warnings.filterwarnings("ignore", message=text, category=UserWarning)
    if "paddle" not in sys.modules and "GLOG_v" not in os.environ:  # glog reads it when Paddle loads
        os.environ.setdefault("GLOG_minloglevel", "2")
    builder = logging.getLogger("utils.cpp_extension")  # Paddle adds its own handler to this logger
    builder.propagate = False
    if not any(getattr(f, "deepmd_paddle", False) for f in builder.filters):
        def warnings_only(record):
            return record.levelno >= logging.WARNING
        warnings_only.deepmd_paddle = True
        builder.addFilter(warnings_only)


# ----------------------------------------------------------------------------- threads
THREADS_ENV = "DP_INTRA_OP_PARALLELISM_THREADS"  # DeePMD-kit's name: Paddle's CPU math threads
KERNEL_THREADS_ENV = "DEEPMD_PADDLE_NUM_THREADS"  # the C++ kernels' OpenMP threads (custom_ops/threads.h)
# processes on this machine: Paddle's launcher, then the MPI launchers (LAMMPS under mpirun)
_LOCAL_SIZE_ENVS = ("PADDLE_LOCAL_SIZE", "PADDLE_TRAINERS_NUM", "MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE",
                    "MV2_COMM_WORLD_LOCAL_SIZE")


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # no sched_getaffinity (macOS)
        return os.cpu_count() or 1


def local_processes() -> int:
    """Processes of this run on this machine (1 when not launched by Paddle or MPI)."""
    for key in _LOCAL_SIZE_ENVS:
        value = os.environ.get(key, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return 1


def cores_per_process() -> int:
    """Cores for each process of this run on this machine (all of them for a single process)."""
    return max(1, usable_cores() // local_processes())


def share_cores() -> None:
    """Several processes on one machine: each takes its share of the cores, in Paddle and in
    the C++ kernels, unless the user set the counts. Call before the first kernel runs."""
    if local_processes() > 1:
        os.environ.setdefault(THREADS_ENV, str(cores_per_process()))
        os.environ.setdefault(KERNEL_THREADS_ENV, str(cores_per_process()))


def set_paddle_threads() -> int:
    """Threads of Paddle's CPU math library (Paddle's own default is 1): ``THREADS_ENV``, or this
    process's share of the cores."""
    from paddle.base import core

    raw = os.environ.get(THREADS_ENV, "").strip()
    try:
        n = int(raw) if raw not in ("", "0") else cores_per_process()
    except ValueError:
        raise ValueError(f"{THREADS_ENV} must be a whole number of threads, got {raw!r}") from None
    n = max(1, n)
    core.set_num_threads(n)
    return n
