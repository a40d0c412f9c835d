"""Kernels, chosen once: every numerical kernel of the model has a C++ operator (``cpp.py``,
built by ``build.py`` from ``custom_ops/``) and a plain-Paddle twin (``twins.py``) with the same
signature. ``TABLE`` pairs them and says whether the operator may enter a frozen graph and which
derivatives it gives; a ``Backend`` is the choice made from it for one model:

- ``cpp``: each kernel's C++ operator where the library has it, the twin otherwise;
- ``paddle``: the twins only (no compiler needed; exported graphs load anywhere Paddle does);
- ``static``: ``cpp`` restricted to operators that may enter a frozen graph (export).

A model holds one backend (``EnergyModel.set_kernels``, fixed when it is built or loaded) and its
layers call ``self.kernels.<name>(...)``. Where a call needs a derivative the operator does not
give (``Kernel.grad``), ``Backend.get(name, order=...)`` hands out the twin; ``dtype`` does the
same for operators written for float64 only. Nothing else in the package picks between C++ and
Paddle.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

from . import cpp, rounding, twins
from .build import load_library
from .checks import MIN_PAIR_DISTANCE, check_frames, check_neighbors

__all__ = ["TABLE", "Backend", "backend", "default_backend", "check_frames", "check_neighbors",
           "MIN_PAIR_DISTANCE", "static_operators"]


@dataclass(frozen=True)
class Kernel:
    op: str  # the registered C++ operator
    cpp: Callable
    twin: Callable | None  # None: checked through another kernel's twin (see tests/test_kernels.py)
    static: bool  # may enter a frozen graph (the operator sets InferShape/InferDtype)
    grad: int  # derivative order the operator gives in its differentiable inputs
    dtypes: tuple = ("float32", "float64")


TABLE = {
    "neighbor_list": Kernel("deepmd_neighbor_list", cpp.neighbor_list, twins.neighbor_list, True, 9),  # no gradient
    "build_rij": Kernel("deepmd_build_rij", cpp.build_rij, twins.build_rij, True, 0),
    "env_mat": Kernel("deepmd_env_mat", cpp.env_mat, twins.env_mat, True, 2),
    "env_mat_excl": Kernel("deepmd_env_mat_excl", cpp.env_mat_excl, twins.env_mat_excl, True, 2),
    "prod_force_virial": Kernel("deepmd_prod_force_virial", cpp.prod_force_virial, twins.prod_force_virial, True, 0),
    "bias_tanh": Kernel("bias_tanh", cpp.bias_tanh, twins.bias_tanh, True, 2),
    "descriptor": Kernel("se_a_descriptor", cpp.descriptor, twins.descriptor, True, 2, ("float64", "float32")),
    "tabulate": Kernel("se_a_tabulate", cpp.tabulate, twins.tabulate, True, 1, ("float64",)),
    "embed": Kernel("se_a_embed", cpp.embed, twins.embed, True, 1),
    "embed_cached": Kernel("se_a_embed_cached", cpp.embed_cached, twins.embed_cached, True, 1),
    "embed_train": Kernel("se_a_embed_train", cpp.embed_train, twins.embed, True, 1),
    # the passes of the hand-assembled training step: derivatives of ``embed``
    "embed_vjp": Kernel("se_a_embed_vjp", cpp.embed_vjp, None, False, 0),
    "embed_ggt": Kernel("se_a_embed_ggt", cpp.embed_ggt, None, False, 0),
    "embed_pgrad": Kernel("se_a_embed_pgrad", cpp.embed_pgrad, None, False, 0),
    "embed_tape": Kernel("se_a_embed_tape", cpp.embed_tape, None, False, 0),  # embed_cached + pgrad's activations
    # the energy fitting net's E and dE/dx with their gradient (the training step's fitting)
    "fitting_ener": Kernel("deepmd_fitting_ener", cpp.fitting_ener, twins.fitting_ener, False, 1),
    # mixed precision: round(x) - x to bfloat16/float16 (no gradient: added as a constant)
    "round_delta": Kernel("deepmd_round_delta", cpp.round_delta, rounding.round_delta, True, 9),
}
BACKENDS = ("cpp", "paddle", "static")
NO_CUSTOM_OP_ENV = "DEEPMD_PADDLE_NO_CUSTOM_OP"


def static_operators() -> tuple:
    """The operators that may enter a frozen graph (and their records in a frozen model)."""
    return tuple(k.op for k in TABLE.values() if k.static)


class Backend:
    """The kernels of one model (see the module docstring): ``backend.env_mat(...)`` calls the
    chosen implementation; ``has(name)`` says whether it is the C++ operator."""

    def __init__(self, name: str):
        if name not in BACKENDS:
            raise ValueError(f"kernel backend {name!r} is not known; allowed: {list(BACKENDS)}")
        lib = None if name == "paddle" else load_library()
        if lib is None and name != "paddle":
            raise RuntimeError(f"kernel backend {name!r} needs the C++ operators, which are not available in this "
                               f"process (see the warning above); use backend('paddle')")
        self.name = name
        self.native = frozenset(k for k, spec in TABLE.items()
                                if lib is not None and hasattr(lib, spec.op) and (spec.static or name != "static"))

    def has(self, name: str) -> bool:
        """True when ``name`` runs as its C++ operator."""
        return name in self.native

    def get(self, name: str, order: int = 0, dtype=None) -> Callable:
        """The implementation of ``name`` for a call that differentiates ``order`` times through
        it (in dtype ``dtype``): the C++ operator when this backend has it and it gives that
        much, the twin otherwise."""
        spec = TABLE[name]
        if name in self.native and order <= spec.grad and (dtype is None or _dtype_name(dtype) in spec.dtypes):
            return spec.cpp
        if spec.twin is None:
            raise RuntimeError(f"kernel {name} ({spec.op}) has no plain-Paddle twin; the {self.name} backend "
                               "cannot run it")
        return spec.twin

    def __getattr__(self, name: str) -> Callable:
        if name in TABLE:
            return self.get(name)
        raise AttributeError(name)

    def __repr__(self):
        return f"Backend({self.name!r}, C++: {sorted(self.native)})"


def _dtype_name(dtype) -> str:
    import paddle

    return {paddle.float64: "float64", paddle.float32: "float32"}.get(dtype, str(dtype))


_cache: dict = {}


def backend(name: str) -> Backend:
    """The backend ``name`` (one object per name and process)."""
    if name not in _cache:
        _cache[name] = Backend(name)
    return _cache[name]


def default_backend() -> Backend:
    """``cpp`` when the operators build here, ``paddle`` otherwise or with
    ``DEEPMD_PADDLE_NO_CUSTOM_OP=1``; decided once per process."""
    if "default" not in _cache:
        off = os.environ.get(NO_CUSTOM_OP_ENV, "").strip() not in ("", "0")
        _cache["default"] = backend("paddle" if off or load_library() is None else "cpp")
    return _cache["default"]
