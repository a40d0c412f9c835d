"""Evaluate a model with DeePMD-kit's ``DeepPot`` interface.

``DeepPot(path)`` reads a frozen model (``dpp freeze``: one file, recognised by its content; or
the older multi-file layout by its prefix, ``.json`` or ``.meta``), a training checkpoint, or a
DeePMD-kit ``.dp``/``.yaml``/``.pb`` file, and offers DeePMD-kit's
``eval(coords, cells, atom_types, atomic=False)``, ``eval_descriptor`` and getters.

Backends (``backend=`` or ``$DEEPMD_PADDLE_INFER_BACKEND``):
- ``auto`` (the default): for frozen models ``jit`` for calls of fewer than
  ``AUTO_PREDICTOR_ATOMS`` atoms (frames x atoms) and ``predictor`` from there, the faster of
  the two on the quiet machine (water, 2 threads: 1,536 to 98,304 atoms 114-116 us/atom with
  ``predictor`` against 158-176 with ``jit``, and 0.7x the memory; at 192 atoms the two runs
  disagreed, 170 vs 211 and 198 vs 162: ``benchmarks/RESULTS_infer.md``); ``dynamic`` otherwise.
- ``jit``: ``paddle.jit.load`` of the frozen programs.
- ``predictor``: ``paddle.inference`` on the same programs, ``disable_onednn()`` (oneDNN gives
  wrong numbers for these nets on CPU; a test guards the numbers); the leanest in memory.
- ``dynamic``: the ``EnergyModel`` in dynamic mode: checkpoints and ``.dp`` files (the only
  backend for them; freezing takes ~10 s, so ``dpp freeze`` is for long runs), and a one-file
  frozen model rebuilt from the weights it carries. A model read from a file gets constant
  weights, which selects the model's evaluation-only fused embedding.

Memory is bounded by an atom budget (``atom_budget=`` or ``$DEEPMD_PADDLE_ATOM_BUDGET``, atoms
x frames per call, default ``DEFAULT_ATOM_BUDGET``): frames are batched up to it, and a frame
larger than it is cut into blocks of centre atoms: the neighbour list is built once for the
frame, each block's energy and its share of forces and virials come from the ``lower``
program (``deepmd_paddle.infer.blocks``), and the shares add up. Peak memory grows with the budget
(standard water model, jit: 1.3 GB at 2,048, 2.1 GB at 12,288 atoms per call), time per atom
hardly changes with it, so a frame of 98,304 atoms runs in 2 GB.
"""
from __future__ import annotations

import os
import warnings

import numpy as np
import paddle

from .. import runtime
from ..io.frozen_file import open_frozen
from ..io.load import load_model
from ..kernels import MIN_PAIR_DISTANCE, check_neighbors
from ..model import EnergyModel
from .eval_args import eval_inputs, param_inputs, types_from_symbols  # noqa: F401  (the package's API)
from .blocks import descriptor_in_blocks, lower_in_blocks
from .runners import DynamicRunner, JitRunner, ModelFileError, PredictorRunner, register_operators

ATOM_BUDGET_ENV = "DEEPMD_PADDLE_ATOM_BUDGET"
BACKEND_ENV = "DEEPMD_PADDLE_INFER_BACKEND"
DEFAULT_ATOM_BUDGET = 2048
BACKENDS = ("auto", "predictor", "jit", "dynamic")
AUTO_PREDICTOR_ATOMS = 1000  # "auto": paddle.inference from this many atoms per call


# ----------------------------------------------------------------------------- DeepPot
class DeepPot:
    """DeePMD-kit's ``DeepPot`` for a deepmd_paddle model (see the module docstring).

    ``model``: a frozen model, checkpoint, ``.dp``/``.yaml``/``.pb`` path, or an ``EnergyModel``.
    ``backend``: auto | predictor | jit | dynamic. ``atom_budget``: atoms x frames per call
    (``auto_batch_size`` is DeePMD-kit's name and is accepted as an int).
    """

    def __init__(self, model, backend: str | None = None, atom_budget: int | None = None,
                 auto_batch_size=None, neighbor_list=None, skip_modifier: bool = False, **kwargs):
        if neighbor_list is not None:
            raise NotImplementedError("an external neighbor_list is not supported; the model builds its own")
        if kwargs:
            raise TypeError(f"unexpected arguments {sorted(kwargs)}")
        backend = (backend or os.environ.get(BACKEND_ENV) or "auto").lower()
        if backend not in BACKENDS:
            raise ValueError(f"backend {backend!r} is not known; allowed: {list(BACKENDS)}")
        if atom_budget is None and isinstance(auto_batch_size, int) and not isinstance(auto_batch_size, bool):
            atom_budget = auto_batch_size
        self.atom_budget = _atom_budget(atom_budget)
        self.model_file = None if isinstance(model, EnergyModel) else os.fspath(model)
        source = None if self.model_file is None else open_frozen(self.model_file)
        threads = runtime.set_paddle_threads()  # Paddle's default is 1
        self._large = None  # the runner of calls of AUTO_PREDICTOR_ATOMS atoms and more
        if source is not None and backend != "dynamic":  # dynamic: the model rebuilt from the file's weights
            self.meta = source.meta
            if self.meta["uses_custom_op"]:
                register_operators(source.path, self.meta)
            self.backend = backend
            self._runner = PredictorRunner(source, threads) if backend == "predictor" else JitRunner(source)
            if backend == "auto":  # predictors are created on first use
                self._large = PredictorRunner(source, threads)
        else:
            if backend not in ("auto", "dynamic"):
                raise ValueError(f"{self.model_file or 'the model'} is not frozen: backend {backend!r} needs "
                                 "`dpp freeze` first; allowed here: dynamic")
            if self.model_file is not None and not os.path.exists(self.model_file) and not os.path.exists(
                    self.model_file + ".json"):  # a checkpoint base <prefix>-<step> is no file itself
                raise FileNotFoundError(f"model {self.model_file!r} does not exist")
            try:
                m = load_model(model)
            except (ValueError, NotImplementedError) as e:
                raise ModelFileError(str(e)) from None
            self.meta = _meta_of(m)
            self.backend = "dynamic"
            self._runner = DynamicRunner(m, owned=self.model_file is not None)
        self.type_map = list(self.meta["type_map"])
        # DPLR (model/modifier): the long-range correction is added to the outputs, as DeePMD-kit's DeepPot does
        self.modifier = None
        if not skip_modifier and (self.meta.get("model_def_script") or {}).get("modifier"):
            self.modifier = (source.model() if source is not None and self.backend != "dynamic" else m).modifier

    # ---------------------------------------------------------------- getters (DeePMD-kit's)
    def get_type_map(self) -> list[str]:
        return list(self.type_map)

    def get_ntypes(self) -> int:
        return len(self.type_map)

    def get_rcut(self) -> float:
        return float(self.meta["rcut"])

    def get_sel(self) -> list[int]:
        return list(self.meta["sel"])

    def get_dim_fparam(self) -> int:
        return int(self.meta.get("dim_fparam", 0))

    def get_dim_aparam(self) -> int:
        return int(self.meta.get("dim_aparam", 0))

    def has_default_fparam(self) -> bool:
        return self.meta.get("default_fparam") is not None

    def get_default_fparam(self) -> list[float] | None:
        return None if self.meta.get("default_fparam") is None else list(self.meta["default_fparam"])

    def get_dim_descriptor(self) -> int:
        return int(self.meta["dim_descriptor"])

    def get_model_def_script(self) -> dict:
        return dict(self.meta.get("model_def_script") or {})

    def __repr__(self):
        return (f"DeepPot({self.model_file!r}, backend={self.backend!r}, type_map={self.type_map}, "
                f"rcut={self.get_rcut()}, atom_budget={self.atom_budget})")

    # ---------------------------------------------------------------- evaluation
    def eval(self, coords, cells, atom_types, atomic: bool = False, fparam=None, aparam=None,
             mixed_type: bool = False, **kwargs):
        """Energy [nf,1], force [nf,na,3], virial [nf,9]; with ``atomic`` also atom energy
        [nf,na,1] and atom virial [nf,na,9] (eV, Angstrom, DeePMD-kit's virial sign).

        coords [nf, na*3] or [nf, na, 3]; cells [nf, 9] (rows a, b, c) or None for open
        boundaries; atom_types [na] or [nf, na]: type indices, or element names of the type map.
        fparam [nf, dim_fparam] or [dim_fparam] (left out: the model's default_fparam, if any);
        aparam [nf, na, dim_aparam], [na, dim_aparam] or [dim_aparam] (DeePMD-kit's sizes).
        """
        coord, box, atype = self._inputs(coords, cells, atom_types, atomic=atomic, **kwargs)
        nf, na = atype.shape
        if self.modifier is not None and (atomic or box is None):
            raise RuntimeError(f"{self.model_file or 'the model'} has a modifier (DPLR's dipole_charge): its "
                               f"long-range correction has {'no atomic energies or virials' if atomic else 'no open-boundary form'}"
                               "; evaluate without atomic=True and with a box, or load with skip_modifier=True for "
                               "the short-range model alone")
        fparam, aparam = self.param_inputs(fparam, aparam, nf, na)
        out = {"energy": np.empty([nf, 1]), "force": np.empty([nf, na, 3]), "virial": np.empty([nf, 9])}
        if atomic:
            out.update(atom_energy=np.empty([nf, na, 1]), atom_virial=np.empty([nf, na, 9]))
        per_call = max(1, self.atom_budget // na)
        for s in range(0, nf, per_call):
            f = slice(s, min(nf, s + per_call))
            b = None if box is None else box[f]
            if na > self.atom_budget:
                nlist, shift = self._neighbor_list(coord[f], atype[f], b)
                res = lower_in_blocks(self.runner_for(na).lower, coord[f], atype[f], nlist, shift, self.atom_budget,
                                      *_frames(f, fparam, aparam))
            else:
                res = self.runner_for(atype[f].size).full(coord[f], atype[f], b, atomic, *_frames(f, fparam, aparam))
                self._check_neighbors(res["nmax"], res["mindist"], coord[f], b)
            for k in out:
                out[k][f] = res[k].reshape(out[k][f].shape)
        if self.modifier is not None:
            e, f, v = self.modifier.correction(coord, box, atype)
            out["energy"] += e.reshape(nf, 1)
            out["force"] += f
            out["virial"] += v
        keys = ("energy", "force", "virial") + (("atom_energy", "atom_virial") if atomic else ())
        return tuple(out[k] for k in keys)

    def eval_descriptor(self, coords, cells, atom_types, fparam=None, aparam=None, mixed_type=False, **kwargs):
        """The se_e2_a descriptor, [nf, na, dim_descriptor]."""
        coord, box, atype = self._inputs(coords, cells, atom_types, **kwargs)
        nf, na = atype.shape
        out = np.empty([nf, na, self.get_dim_descriptor()])
        per_call = max(1, self.atom_budget // na)
        for s in range(0, nf, per_call):
            f = slice(s, min(nf, s + per_call))
            nlist, shift = self._neighbor_list(coord[f], atype[f], None if box is None else box[f])
            out[f] = descriptor_in_blocks(self._runner.desc, coord[f], atype[f], nlist, shift, self.atom_budget,
                                          out.shape[-1])
        return out

    # ---------------------------------------------------------------- internals
    def param_inputs(self, fparam, aparam, nf: int, na: int):
        """(fparam [nf, dim_fparam] or None, aparam [nf, na, dim_aparam] or None), checked
        (``eval_args.param_inputs``; fparam left out: the model's default_fparam)."""
        return param_inputs(fparam, aparam, nf, na, self.get_dim_fparam(), self.get_dim_aparam(),
                            self.get_default_fparam())

    def _inputs(self, coords, cells, atom_types, **kwargs):
        """float64 coord [nf,na,3], box [nf,9] or None, int32 atype [nf,na]; clear errors (eval_args)."""
        return eval_inputs(coords, cells, atom_types, self.type_map, self.get_rcut(), **kwargs)

    def _neighbor_list(self, coord, atype, box):
        """(nlist [nf,na,nnei] int32, shift [nf,na,nnei,3]) for the whole frames, checked (the
        inputs passed check_frames already)."""
        from ..kernels import default_backend

        t = paddle.to_tensor
        c, a, b = t(coord), t(atype), None if box is None else t(box)
        nlist, shift, nmax, mindist = default_backend().neighbor_list(c, b, a, self.get_rcut(), self.get_sel(),
                                                                      check=False)
        self._check_neighbors(nmax.numpy(), mindist.numpy(), coord, box)
        return nlist.numpy(), shift.numpy()

    def runner_for(self, atoms: int):
        """The program runner this DeepPot uses for a call of ``atoms`` atoms (frames x atoms; its
        backend choice, see ``auto`` above). Its ``lower(coord, atype, nlist, shift, centre)``
        evaluates a block of centre atoms with a neighbour list given by the caller (the LAMMPS
        pair style uses it through ``blocks.lower_in_blocks``)."""
        return self._large if self._large is not None and atoms >= AUTO_PREDICTOR_ATOMS else self._runner

    def _check_neighbors(self, nmax, mindist, coord, box):
        """Refuse overlapping atoms, warn on neighbours beyond sel (the model's checks)."""
        if nmax is None:  # the dynamic model checked already
            return
        table = (self.meta.get("model_def_script") or {}).get("compress")
        if table and np.min(mindist) < table["r_table"]:  # a frozen compressed model cannot count them itself
            warnings.warn(f"compressed model: a pair at {np.min(mindist):.4g} A is closer than its tables reach "
                          f"({table['r_table']:.4g} A): embedding inputs were clamped", stacklevel=3)
        if np.min(mindist) < MIN_PAIR_DISTANCE or np.any(np.max(nmax, axis=0) > np.asarray(self.get_sel())):
            t = paddle.to_tensor
            check_neighbors(t(nmax), t(mindist), self.get_sel(), t(coord), None if box is None else t(box),
                            self.type_map)


# ----------------------------------------------------------------------------- helpers
def _meta_of(model) -> dict:
    d, fit = model.descriptor, model.fitting.input_config()
    return {"type_map": list(model.type_map), "rcut": d.rcut, "sel": list(d.sel),
            "dim_descriptor": d.get_dim_out(), "model_def_script": model.get_config(),
            "dim_fparam": fit["numb_fparam"], "dim_aparam": fit["numb_aparam"], "default_fparam": fit["default_fparam"]}


def _frames(f: slice, fparam, aparam) -> tuple:
    """The frame and atomic parameters of the frames ``f`` (None stays None)."""
    return (None if fparam is None else fparam[f]), (None if aparam is None else np.ascontiguousarray(aparam[f]))


def _atom_budget(value) -> int:
    raw = value if value is not None else os.environ.get(ATOM_BUDGET_ENV) or DEFAULT_ATOM_BUDGET
    try:
        budget = int(raw)
    except (TypeError, ValueError):
        raise ValueError(f"atom budget ({ATOM_BUDGET_ENV}) must be a positive integer, got {raw!r}") from None
    if budget <= 0:
        raise ValueError(f"atom budget ({ATOM_BUDGET_ENV}) must be a positive integer, got {raw!r}")
    return budget


def load_evaluator(path) -> DeepPot:
    """What ``dpp test`` evaluates: any model ``DeepPot`` reads."""
    return DeepPot(path)
