"""The C++ operators: build once, cache, load; Python wrappers.

Two operators live in ``custom_ops/`` (installed as ``deepmd_paddle.custom_ops``):

* ``deepmd_neighbor_list(coord, box, atype; rcut, sel, pbc) -> nlist, shift, nmax, mindist``:
  O(N) cell-list search, periodic (any triclinic box, also thinner than rcut) or open;
  no gradient.
* ``deepmd_env_mat(rij, nlist, atype, davg, dstd; rcut, rcut_smth) -> env``: the normalised
  se_e2_a environment matrix ``R~ = (w(r) [1/r, x/r^2, y/r^2, z/r^2] - davg) / dstd``, with a
  gradient wrt ``rij`` and a double gradient (so that a loss on forces reaches the weights).

``load_op()`` compiles them with ``paddle.utils.cpp_extension.load`` on first use into
``$DEEPMD_PADDLE_CACHE/ops-<key>`` (default ``~/.cache/deepmd_paddle``), the key hashing the
sources, the compiler flags, the Paddle version and the CPU (``-march=native``). Every other
``*.cc`` of that folder (other operators' bindings) becomes a second library the same way; if
it fails to build, only its operators are missing. Later
processes register the cached library directly (milliseconds). A file lock makes processes
that start together build once. It returns an ``OpLibrary`` whose attributes are the raw
operators (``lib.deepmd_env_mat(...)``, ``lib.bias_tanh(...)``, ...). Without a compiler, or
when the build fails, one warning names the cause and ``load_op()`` returns None: the
plain-Paddle twins in ``deepmd_paddle.model.env_mat`` take over. ``DEEPMD_PADDLE_NO_CUSTOM_OP=1`` skips the build.

Threads: the kernels run on every available core (OpenMP; calls below ~1 ms of work run
serially), whatever OMP_NUM_THREADS Paddle set for itself; ``DEEPMD_PADDLE_NUM_THREADS=n``
caps them (use 1 with one process per core, e.g. MPI). Idle OpenMP threads should sleep at
once rather than spin: importing this module before ``paddle`` sets ``GOMP_SPINCOUNT=0``
(see below); otherwise start Python with ``OMP_WAIT_POLICY=passive`` on a shared machine.

The wrappers trace under ``paddle.jit.to_static``: value checks that need NumPy live in
``check_inputs``, which the wrappers call in eager mode only.
"""
from __future__ import annotations

import hashlib
import os
import platform
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

# Idle GNU OpenMP threads spin for milliseconds before they sleep; next to Paddle's serial
# operators and other processes that takes the cores they need (measured: 1,536 atoms 2x and
# 192 atoms 5x slower per step on a busy 2-core machine). libgomp reads this once, when Paddle
# loads it, so it only helps when deepmd_paddle is imported before paddle; the user's
# OMP_WAIT_POLICY / GOMP_SPINCOUNT win.
if "paddle" not in sys.modules and "OMP_WAIT_POLICY" not in os.environ:
    os.environ.setdefault("GOMP_SPINCOUNT", "0")

import numpy as np  # noqa: E402
import paddle  # noqa: E402

_LIB_NAME = "deepmd_paddle_ops"
_CORE_SOURCES = ("neighbor_list_op.cc", "env_mat_op.cc", "build_rij_op.cc",  # bindings
                 "nlist_grid.cc", "nlist_search.cc", "neighbor_list.cc", "env_mat.cc")  # kernels
_CORE_HEADERS = ("neighbor_list.h", "env_mat.h", "build_rij.h", "threads.h", "binding.h")
_CXX_FLAGS = ["-O3", "-march=native", "-fopenmp", "-fno-math-errno", "-fno-trapping-math"]
_LD_FLAGS = ["-fopenmp"]  # links libgomp
_NO_OP_ENV = "DEEPMD_PADDLE_NO_CUSTOM_OP"
_CACHE_ENV = "DEEPMD_PADDLE_CACHE"

MAX_IMAGES = 1e6  # periodic images per neighbourhood that check_inputs accepts

_state: dict = {"tried": False, "lib": None}


# ----------------------------------------------------------------------------- build and cache
def source_dir() -> Path:
    """Folder of the C++ sources (``custom_ops/`` in a checkout, or the installed package)."""
    try:
        import deepmd_paddle.custom_ops as m

        return Path(m.__file__).resolve().parent
    except ImportError:  # a checkout on PYTHONPATH, not installed
        return Path(__file__).resolve().parents[1] / "custom_ops"


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
def load_op():
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
                              "(deepmd_paddle.model.env_mat) will be used instead", RuntimeWarning, stacklevel=2)
                return None
            warnings.warn(f"deepmd_paddle: the extra operators of {', '.join(p.name for p in sources)} are "
                          f"unavailable ({cause}); the plain-Paddle code is used for them",
                          RuntimeWarning, stacklevel=2)
    _state["lib"] = OpLibrary(names, paths)
    return _state["lib"]


@paddle.jit.not_to_static
def op_available() -> bool:
    """True when the C++ operators are (or can be) registered in this process."""
    return load_op() is not None


@paddle.jit.not_to_static
def _require_op() -> None:
    if load_op() is None:
        raise RuntimeError(
            "the deepmd_paddle C++ operator is not available in this process "
            f"({_NO_OP_ENV} is set, or no compiler / the build failed: see the earlier warning); "
            "use deepmd_paddle.model.env_mat instead"
        )


# ----------------------------------------------------------------------------- checks
def _shape(t) -> list:
    """Static shape, -1 where unknown while tracing."""
    return [d if isinstance(d, int) else -1 for d in t.shape]


@paddle.jit.not_to_static
def check_inputs(coord, box, atype, ntypes: int, rcut: float | None = None) -> None:
    """Eager value checks before a neighbour search; raises ValueError naming the problem.

    coord [nf, nloc, 3] float32/float64; box [nf, 9] of the same dtype or None; atype
    [nf, nloc] integer with values in 0..ntypes-1; a box must have a nonzero volume and,
    given rcut, need at most ``MAX_IMAGES`` periodic images to cover it.
    """
    _check_shapes(coord, box, atype)
    check_values(coord.numpy(), None if box is None else box.numpy(), atype.numpy(), ntypes, rcut)


def check_values(coord: np.ndarray, box, atype: np.ndarray, ntypes: int, rcut: float | None = None) -> None:
    """The value half of ``check_inputs`` on NumPy arrays of the right shapes (the model's own
    input checks call it too): types in range, finite numbers, boxes with volume and not too thin."""
    nf, nloc = coord.shape[0], coord.shape[1]
    at = np.asarray(atype).reshape(-1)
    bad = np.flatnonzero((at < 0) | (at >= ntypes))
    if bad.size:
        k = int(bad[0])
        where = f"index {k % nloc}" + (f" of frame {k // nloc}" if nf > 1 else "")
        raise ValueError(
            f"atom type {int(at[k])} at {where} is out of range: the model has ntypes = {ntypes} "
            f"(allowed 0..{ntypes - 1})"
        )
    if not np.isfinite(coord).all():
        raise ValueError("coord contains NaN or infinite values")
    if box is not None:
        b = np.asarray(box, dtype=np.float64).reshape(nf, 3, 3)
        if not np.isfinite(b).all():
            raise ValueError("box contains NaN or infinite values")
        det = np.linalg.det(b)
        scale = np.prod(np.linalg.norm(b, axis=-1), axis=-1)
        for f in range(nf):
            if not abs(det[f]) > 1e-10 * scale[f] or scale[f] == 0.0:
                raise ValueError(
                    f"box of frame {f} has zero volume (det = {det[f]:.3g}); its rows must be "
                    "three independent lattice vectors a, b, c"
                )
        if rcut is not None:
            spacing = np.abs(det)[:, None] / np.linalg.norm(np.cross(b[:, [1, 2, 0]], b[:, [2, 0, 1]]), axis=-1)
            images = np.prod(2 * np.ceil(rcut / spacing) + 1, axis=-1)  # nf
            f = int(np.argmax(images))
            if images[f] > MAX_IMAGES:
                raise ValueError(
                    f"box of frame {f} is too thin for rcut = {rcut}: its plane spacings "
                    f"{np.round(spacing[f], 4).tolist()} A need {images[f]:.3g} periodic images "
                    f"(at most {MAX_IMAGES:.0e})"
                )


@paddle.jit.not_to_static
def _check_shapes(coord, box, atype) -> None:
    """Shape and dtype checks that also hold while tracing (unknown sizes are -1)."""
    cs = _shape(coord)
    if len(cs) != 3 or cs[2] != 3:
        raise ValueError(f"coord must have shape [nf, nloc, 3], got {cs}")
    if coord.dtype not in (paddle.float32, paddle.float64):
        raise ValueError(f"coord must be float32 or float64, got {coord.dtype}")
    if len(_shape(atype)) != 2 or not _dims_match(_shape(atype), cs[:2]):
        raise ValueError(f"atype must have shape [nf, nloc] = {cs[:2]}, got {_shape(atype)}")
    if box is not None:
        if len(_shape(box)) != 2 or not _dims_match(_shape(box), [cs[0], 9]):
            raise ValueError(f"box must have shape [nf, 9] = {[cs[0], 9]}, got {_shape(box)}")
        if box.dtype != coord.dtype:
            raise ValueError(f"box must have the dtype of coord ({coord.dtype}), got {box.dtype}")


def _dims_match(got, want) -> bool:
    return len(got) == len(want) and all(g == w or g < 0 or w < 0 for g, w in zip(got, want))


@paddle.jit.not_to_static
def _check_cutoffs(rcut, sel, rcut_smth=None) -> None:
    if not rcut > 0:
        raise ValueError(f"rcut must be positive, got {rcut}")
    if rcut_smth is not None and not 0 <= rcut_smth < rcut:
        raise ValueError(f"rcut_smth must satisfy 0 <= rcut_smth < rcut = {rcut}, got {rcut_smth}")
    if sel is not None and (len(sel) == 0 or any(int(s) != s or s < 0 for s in sel)):
        raise ValueError(f"sel must be a non-empty list of non-negative integers, got {sel}")


# ----------------------------------------------------------------------------- wrappers
def _attr(x: float) -> str:
    """A cutoff as the operator's attribute: repr round-trips the double exactly (Paddle 3.3's
    PIR backward has no double attributes, and float32 would round)."""
    return repr(float(x))


def neighbor_list(coord, box, atype, rcut: float, sel: list, check: bool = True):
    """Neighbour list of every atom: ``(nlist, shift, nmax, mindist)``.

    coord: nf x nloc x 3 (float32/float64); box: nf x 9 (rows a, b, c) or None for open
    boundaries; atype: nf x nloc integer in 0..len(sel)-1.
    nlist: int32 nf x nloc x nnei (nnei = sum(sel)), local index of the neighbour, sel[t] slots
    per type t, nearest first, -1 when unused; shift: nf x nloc x nnei x 3 (coord dtype) with
    ``r_ij = coord[j] + shift - coord[i]``; nmax: int32 nf x ntypes, the largest number of
    neighbours of each type within rcut (> sel[t] means truncation); mindist: nf, the smallest
    pair distance (0 for coinciding atoms, rcut when no pair). No gradient flows through it.
    ``check=False`` skips ``check_inputs`` (the caller validated the inputs already).
    """
    _require_op()
    sel = [int(s) for s in sel]
    _check_cutoffs(rcut, sel)
    _check_shapes(coord, box, atype)
    if atype.dtype != paddle.int32:
        atype = atype.astype("int32")
    if check and paddle.in_dynamic_mode():
        check_inputs(coord, box, atype, len(sel), rcut)
    pbc = box is not None
    if box is None:
        box = paddle.zeros([1, 9], dtype=coord.dtype)
    outs = load_op().deepmd_neighbor_list(coord.detach(), box.detach(), atype, _attr(rcut), sel, pbc)
    for t in outs:
        t.stop_gradient = True
    return tuple(outs)


def env_mat(rij, nlist, atype, davg, dstd, rcut: float, rcut_smth: float):
    """Normalised environment matrix ``(R - davg[t_i]) / dstd[t_i]``: nf x nloc x nnei x 4.

    rij: nf x nloc x nnei x 3 (float32/float64, differentiable; padded slots ignored);
    nlist: int32 nf x nloc x nnei (-1 = padded); atype: nf x nloc; davg, dstd: ntypes x nnei x 4
    (constants, cast to rij's dtype). The result has rij's dtype. Gradient and double gradient
    wrt rij are exact.
    """
    _require_op()
    _check_cutoffs(rcut, None, rcut_smth)
    rs = _shape(rij)
    if len(rs) != 4 or rs[3] != 3:
        raise ValueError(f"rij must have shape [nf, nloc, nnei, 3], got {rs}")
    if not _dims_match(_shape(nlist), rs[:3]):
        raise ValueError(f"nlist must have shape [nf, nloc, nnei] = {rs[:3]}, got {_shape(nlist)}")
    if not _dims_match(_shape(atype), rs[:2]):
        raise ValueError(f"atype must have shape [nf, nloc] = {rs[:2]}, got {_shape(atype)}")
    if rij.dtype not in (paddle.float32, paddle.float64):
        raise ValueError(f"rij must be float32 or float64, got {rij.dtype}")
    for name, t in (("davg", davg), ("dstd", dstd)):
        if len(_shape(t)) != 3 or not _dims_match(_shape(t)[1:], [rs[2], 4]):
            raise ValueError(f"{name} must have shape [ntypes, nnei = {rs[2]}, 4], got {_shape(t)}")
    if davg.dtype != rij.dtype:  # statistics are often kept in float64: env follows rij
        davg = davg.astype(rij.dtype)
    if dstd.dtype != rij.dtype:
        dstd = dstd.astype(rij.dtype)
    if nlist.dtype != paddle.int32:
        nlist = nlist.astype("int32")
    if atype.dtype != paddle.int32:
        atype = atype.astype("int32")
    return load_op().deepmd_env_mat(rij, nlist, atype, davg.detach(), dstd.detach(), _attr(rcut), _attr(rcut_smth))
