"""Build, cache and register the C++ operators (``custom_ops/``, installed as
``deepmd_paddle.custom_ops``).

``load_library()`` compiles them with ``paddle.utils.cpp_extension.load`` on first use into
``$DEEPMD_PADDLE_CACHE/ops-<key>`` (default ``~/.cache/deepmd_paddle``), the key hashing the
sources, the compiler flags, the Paddle version and the CPU (``-march=native``). The core
library (neighbour list, environment matrix, r_ij, force product) and the other bindings (a
second library: embedding, tables, activation) are built separately, so a broken extra source
never takes the core down. Later processes register the cached library directly
(milliseconds); a file lock makes processes that start together build once. It returns an
``OpLibrary`` whose attributes are the raw operators; which operator serves which kernel is
decided by ``deepmd_paddle.kernels`` (the table), not here. Without a compiler, or when the
build fails, one warning names the cause and ``load_library()`` returns None.
``DEEPMD_PADDLE_NO_CUSTOM_OP=1`` skips the build.

Threads: the kernels run on every available core (OpenMP; calls below ~1 ms of work run
serially); ``DEEPMD_PADDLE_NUM_THREADS=n`` caps them (``deepmd_paddle.runtime``).
"""
from __future__ import annotations

import hashlib
import os
import platform
import shutil
import tempfile
import warnings
from pathlib import Path

import paddle

_LIB_NAME = "deepmd_paddle_ops"
_CORE_SOURCES = ("neighbor_list_op.cc", "env_mat_op.cc", "build_rij_op.cc",  # bindings
                 "nlist_grid.cc", "nlist_search.cc", "neighbor_list.cc", "env_mat.cc")  # kernels
_CORE_HEADERS = ("neighbor_list.h", "env_mat.h", "build_rij.h", "threads.h", "binding.h")
_CXX_FLAGS = ["-O3", "-march=native", "-fopenmp", "-fno-math-errno", "-fno-trapping-math"]
_LD_FLAGS = ["-fopenmp"]  # links libgomp
_NO_OP_ENV = "DEEPMD_PADDLE_NO_CUSTOM_OP"
_CACHE_ENV = "DEEPMD_PADDLE_CACHE"

_state: dict = {"tried": False, "lib": None}


# ----------------------------------------------------------------------------- build and cache
def source_dir() -> Path:
    """Folder of the C++ sources (``custom_ops/`` in a checkout, or the installed package)."""
    try:
        import deepmd_paddle.custom_ops as m

        return Path(m.__file__).resolve().parent
    except ImportError:  # a checkout on PYTHONPATH, not installed
        return Path(__file__).resolve().parents[2] / "custom_ops"


def _cpu_signature() -> str:
    """What ``-march=native`` depends on: CPU model and feature flags."""
    sig = platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            seen = set()
            for line in f:
                key = line.split(":", 1)[0].strip()
                if key in ("model name", "flags", "vendor_id", "cpu family", "model") and key not in seen:
                    seen.add(key)
                    sig += "|" + line.strip()
    except OSError:
        sig += "|" + platform.processor()
    return sig


def _library_parts() -> list:
    """(library name, sources, headers) to build: this module's kernels, and every other
    ``*.cc`` of the folder (other operators' bindings) as a second library, so that a broken
    extra source never takes the neighbour list and env mat down with it."""
    src = source_dir()
    core = [src / n for n in _CORE_SOURCES]
    core_h = [src / n for n in _CORE_HEADERS]
    extra = sorted(p for p in src.glob("*.cc") if p.name not in _CORE_SOURCES)
    extra_h = sorted(p for p in src.glob("*.h") if p.name not in _CORE_HEADERS)
    parts = [(_LIB_NAME, core, core_h)]
    if extra:
        parts.append((_LIB_NAME + "_extra", extra, extra_h + core_h))
    return parts


def cache_key(files=None) -> str:
    """Hash of everything a compiled library depends on (default: the core library)."""
    h = hashlib.sha256()
    if files is None:
        _, sources, headers = _library_parts()[0]
        files = sources + headers
    for path in files:
        h.update(path.name.encode())
        h.update(path.read_bytes())
    h.update(repr((_CXX_FLAGS, _LD_FLAGS, paddle.__version__, os.environ.get("CXX", ""))).encode())
    h.update(_cpu_signature().encode())
    return h.hexdigest()[:16]


def cache_dir(files=None) -> Path:
    root = os.environ.get(_CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "deepmd_paddle")
    return Path(root) / f"ops-{cache_key(files)}"


def _find_compiler() -> str | None:
    for name in (os.environ.get("CXX"), "c++", "g++"):
        if name and shutil.which(name.split()[0]):
            return name
    return None


def _register(lib: Path) -> list:
    """Register the operators of a built library; returns their names."""
    from paddle.utils.cpp_extension.extension_utils import load_op_meta_info_and_register_op

    return list(load_op_meta_info_and_register_op(str(lib)))


def _build(name: str, sources: list, target: Path) -> list:
    """Compile into a private folder, register it, move the library to ``target``; op names."""
    from paddle.utils.cpp_extension.extension_utils import parse_op_name_from

    sources = [str(p) for p in sources]
    work = Path(tempfile.mkdtemp(prefix="build-", dir=target.parent))
    try:
        _compile_and_register(name, sources, work)
        os.replace(work / name / f"{name}.so", target)  # atomic: readers never see half a file
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return sorted(parse_op_name_from(sources))


def _compile_and_register(name: str, sources: list, work: Path) -> None:
    from paddle.utils.cpp_extension import load

    try:
        load(
            name=name,
            sources=sources,
            extra_cxx_cflags=list(_CXX_FLAGS),
            extra_ldflags=list(_LD_FLAGS),
            extra_include_paths=[str(source_dir())],
            build_directory=str(work),
            verbose=False,
        )  # also registers the operators in this process
    except RuntimeError as err:  # Paddle's message names no cause; the compiler printed it
        files = ", ".join(Path(p).name for p in sources)
        raise RuntimeError(f"compiling {files} failed (the compiler's messages are above)") from err


def _load_library(name: str, sources: list, headers: list, remember_failure: bool) -> list:
    """Register library ``name`` from the cache, building it first if needed; op names.

    With ``remember_failure`` a failed build leaves ``FAILED`` (its error) in the cache folder,
    so that later processes do not retry the same sources (any change of them changes the
    folder)."""
    folder = cache_dir(sources + headers)
    target = folder / f"{name}.so"
    failed = folder / "FAILED"
    if not target.exists():
        if failed.exists():
            raise RuntimeError(failed.read_text().strip() + f" (cached in {failed}; delete it to retry)")
        if _find_compiler() is None:
            raise RuntimeError("no C++ compiler found (looked for $CXX, c++, g++)")
        folder.mkdir(parents=True, exist_ok=True)
        import fcntl

        with open(folder / "build.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one process builds, the others wait for it
            if failed.exists():
                raise RuntimeError(failed.read_text().strip())
            if not target.exists():
                try:
                    return _build(name, sources, target)
                except Exception as err:
                    if not remember_failure:
                        raise
                    lines = str(err).strip().splitlines()
                    failed.write_text(lines[-1] if lines else f"building {name} failed")
                    raise
    return _register(target)


class OpLibrary:
    """The registered operators as plain functions: ``lib.<op name>(*inputs, *attrs)``.

    Inputs then attributes in their declared order (as ``PD_BUILD_OP`` lists them); a single
    output is returned as a tensor, several as a list."""

    def __init__(self, names, libraries):
        self.names = tuple(names)
        self.libraries = tuple(libraries)
        for name in self.names:
            setattr(self, name, _raw_op(name))

    def __repr__(self):
        return f"OpLibrary({', '.join(self.names)} from {', '.join(self.libraries)})"


def _raw_op(name: str):
    @paddle.jit.not_to_static
    def run(*args):
        outs = paddle._C_ops._run_custom_op(name, *args)
        return outs[0] if len(outs) == 1 else outs

    run.__name__ = run.__qualname__ = name
    return run


@paddle.jit.not_to_static
def load_library():
    """Register the operators (building them if needed) and return an ``OpLibrary``;
    None when they are unavailable (the reason is warned once)."""
    if _state["tried"]:
        return _state["lib"]
    _state["tried"] = True
    if os.environ.get(_NO_OP_ENV, "").strip() not in ("", "0"):
        return None
    names, paths = [], []
    for k, (name, sources, headers) in enumerate(_library_parts()):
        try:
            names += _load_library(name, sources, headers, remember_failure=k > 0)
            paths.append(name)
        except Exception as err:  # the core: fall back to the plain-Paddle path; extras: skip
            lines = str(err).strip().splitlines()
            cause = f"{type(err).__name__}: {lines[-1] if lines else ''}"
            if k == 0:
                warnings.warn(f"deepmd_paddle: the C++ operator is unavailable ({cause}); the pure-Paddle path "
                              "(deepmd_paddle.kernels.twins) will be used instead", RuntimeWarning, stacklevel=2)
                return None
            warnings.warn(f"deepmd_paddle: the extra operators of {', '.join(p.name for p in sources)} are "
                          f"unavailable ({cause}); the plain-Paddle code is used for them",
                          RuntimeWarning, stacklevel=2)
    _state["lib"] = OpLibrary(names, paths)
    return _state["lib"]
