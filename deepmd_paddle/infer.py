"""Evaluate a model with DeePMD-kit's ``DeepPot`` interface.

``DeepPot(path)`` reads a frozen model (``dpp freeze``: prefix, ``.json`` or ``.meta``), a
training checkpoint, or a DeePMD-kit ``.dp``/``.yaml`` file, and offers DeePMD-kit's
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
  backend for them; freezing takes ~10 s, so ``dpp freeze`` is for long runs). A model read
  from a file gets constant weights, which selects the model's evaluation-only fused embedding.

Memory is bounded by an atom budget (``atom_budget=`` or ``$DEEPMD_PADDLE_ATOM_BUDGET``, atoms
x frames per call, default ``DEFAULT_ATOM_BUDGET``): frames are batched up to it, and a frame
larger than it is cut into blocks of centre atoms: the neighbour list is built once for the
frame, each block's energy and its share of forces and virials come from the ``lower``
program (``deepmd_paddle.export``), and the shares add up. Peak memory grows with the budget
(standard water model, jit: 1.3 GB at 2,048, 2.1 GB at 12,288 atoms per call), time per atom
hardly changes with it, so a frame of 98,304 atoms runs in 2 GB.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
import numpy as np
import paddle

from . import export
from .eval_args import eval_inputs
from .model.checks import MIN_PAIR_DISTANCE, check_neighbors

ATOM_BUDGET_ENV = "DEEPMD_PADDLE_ATOM_BUDGET"
BACKEND_ENV = "DEEPMD_PADDLE_INFER_BACKEND"
THREADS_ENV = "DP_INTRA_OP_PARALLELISM_THREADS"  # DeePMD-kit's name; default: all usable cores
# (for the dynamic and jit backends it sets Paddle's process-wide CPU math threads, as training does)
DEFAULT_ATOM_BUDGET = 2048
BACKENDS = ("auto", "predictor", "jit", "dynamic")
AUTO_PREDICTOR_ATOMS = 1000  # "auto": paddle.inference from this many atoms per call


class ModelFileError(ValueError):
    """A path that is not a model this package can read."""


# ----------------------------------------------------------------------------- runners
class _DynamicRunner:
    """The ``EnergyModel`` itself, in dynamic mode (its own input checks run). A model read
    from a file gets constant weights: the backward pass for forces then computes no weight
    gradients (a model object passed in is left trainable)."""

    def __init__(self, model, owned: bool):
        self.model = model.eval()
        if owned:
            for p in self.model.parameters():
                p.stop_gradient = True
        self.lower_layer = export.LowerProgram(self.model)
        self.desc_layer = export.DescriptorProgram(self.model)

    def full(self, coord, atype, box, atomic):
        t = paddle.to_tensor
        out = self.model(t(coord), t(atype), None if box is None else t(box), do_atomic_virial=atomic)
        keys = ["energy", "force", "virial", "atom_energy"] + (["atom_virial"] if atomic else [])
        return [out[k].numpy() for k in keys] + ([None] if not atomic else []) + [None, None]

    def lower(self, *arrays):
        return [o.numpy() for o in self.lower_layer(*[paddle.to_tensor(a) for a in arrays])]

    def desc(self, *arrays):
        with paddle.no_grad():
            return self.desc_layer(*[paddle.to_tensor(a) for a in arrays]).numpy()


class _PredictorRunner:
    """``paddle.inference`` predictors, one per program, created on first use."""

    def __init__(self, prefix: str, meta: dict, threads: int):
        self.prefix, self.meta, self.threads = prefix, meta, threads
        self.predictors: dict = {}

    def _run(self, name, arrays):
        pred = self.predictors.get(name)
        if pred is None:
            suffix = export.PROGRAMS[name][0]
            cfg = paddle.inference.Config(self.prefix + suffix + ".json", self.prefix + suffix + ".pdiparams")
            cfg.disable_onednn()  # wrong numbers on CPU otherwise
            cfg.disable_glog_info()
            cfg.set_cpu_math_library_num_threads(self.threads)
            pred = self.predictors[name] = paddle.inference.create_predictor(cfg)
        for key, a in zip(export.PROGRAMS[name][1], arrays):
            pred.get_input_handle(key).copy_from_cpu(a)
        pred.run()
        return [pred.get_output_handle(n).copy_to_cpu() for n in pred.get_output_names()]

    def full(self, coord, atype, box, atomic):
        return self._run("nopbc", [coord, atype]) if box is None else self._run("pbc", [coord, atype, box])

    def lower(self, *arrays):
        return self._run("lower", arrays)

    def desc(self, *arrays):
        return self._run("desc", arrays)[0]


class _JitRunner:
    """``paddle.jit.load``: one layer whose methods are the programs (Paddle's naming rule).

    jit.load also reads every ``<prefix>*.<name>.json`` next to the model as a method, so
    another model whose name starts with this one's would be mixed in: the files are linked
    into a private folder first."""

    def __init__(self, prefix: str):
        tmp = tempfile.mkdtemp(prefix="deepmd_paddle_jit_")
        try:
            for suffix, _, _ in export.PROGRAMS.values():
                for ext in (".json", ".pdiparams"):
                    os.symlink(os.path.abspath(prefix + suffix + ext), os.path.join(tmp, "model" + suffix + ext))
            self.layer = paddle.jit.load(os.path.join(tmp, "model"))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        self.layer.eval()

    def _run(self, method, arrays):
        with paddle.no_grad():
            out = method(*[paddle.to_tensor(a) for a in arrays])
        return [o.numpy() for o in (out if isinstance(out, (list, tuple)) else [out])]

    def full(self, coord, atype, box, atomic):
        if box is None:
            return self._run(self.layer.nopbc, [coord, atype])
        return self._run(self.layer.forward, [coord, atype, box])

    def lower(self, *arrays):
        return self._run(self.layer.lower, arrays)

    def desc(self, *arrays):
        return self._run(self.layer.desc, arrays)[0]


# ----------------------------------------------------------------------------- DeepPot
class DeepPot:
    """DeePMD-kit's ``DeepPot`` for a deepmd_paddle model (see the module docstring).

    ``model``: a frozen model, checkpoint, ``.dp``/``.yaml`` path, or an ``EnergyModel``.
    ``backend``: auto | predictor | jit | dynamic. ``atom_budget``: atoms x frames per call
    (``auto_batch_size`` is DeePMD-kit's name and is accepted as an int).
    """

    def __init__(self, model, backend: str | None = None, atom_budget: int | None = None,
                 auto_batch_size=None, neighbor_list=None, **kwargs):
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
        self.model_file = None if isinstance(model, export.EnergyModel) else os.fspath(model)
        prefix = None if self.model_file is None else export.frozen_prefix(self.model_file)
        if prefix is not None:
            self.meta = read_meta(prefix)
            self._use_op = self.meta["uses_custom_op"]
            if self._use_op:
                _register_op(prefix, self.meta)
            if backend == "dynamic":
                raise ValueError(f"{self.model_file} is a frozen model: backend must be predictor or jit")
            self.backend = backend
            self._runner = (_PredictorRunner(prefix, self.meta, _threads()) if backend == "predictor"
                            else _JitRunner(prefix))
            if backend == "auto":  # predictors are created on first use
                self._large = _PredictorRunner(prefix, self.meta, _threads())
            if backend != "predictor":
                paddle.base.core.set_num_threads(_threads())  # Paddle's default is 1
        else:
            if backend not in ("auto", "dynamic"):
                raise ValueError(f"{self.model_file or 'the model'} is not frozen: backend {backend!r} needs "
                                 "`dpp freeze` first; allowed here: dynamic")
            if self.model_file is not None and not os.path.exists(self.model_file) and not os.path.exists(
                    self.model_file + ".json"):  # a checkpoint base <prefix>-<step> is no file itself
                raise FileNotFoundError(f"model {self.model_file!r} does not exist")
            try:
                m = export.load_model(model)
            except (ValueError, NotImplementedError) as e:
                raise ModelFileError(str(e)) from None
            self.meta = _meta_of(m)
            from . import ops

            self._use_op = m.descriptor.use_op is not False and ops.load_op() is not None
            self.backend = "dynamic"
            self._runner = _DynamicRunner(m, owned=self.model_file is not None)
            self._large = None
            paddle.base.core.set_num_threads(_threads())  # Paddle's default is 1
        self.type_map = list(self.meta["type_map"])

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
        return 0

    def get_dim_aparam(self) -> int:
        return 0

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
        """
        if fparam is not None or aparam is not None:
            raise ValueError("this model takes no fparam/aparam (get_dim_fparam() = get_dim_aparam() = 0)")
        coord, box, atype = self._inputs(coords, cells, atom_types, atomic=atomic, **kwargs)
        nf, na = atype.shape
        out = {"energy": np.empty([nf, 1]), "force": np.empty([nf, na, 3]), "virial": np.empty([nf, 9])}
        if atomic:
            out.update(atom_energy=np.empty([nf, na, 1]), atom_virial=np.empty([nf, na, 9]))
        per_call = max(1, self.atom_budget // na)
        for s in range(0, nf, per_call):
            f = slice(s, min(nf, s + per_call))
            b = None if box is None else box[f]
            if na > self.atom_budget:
                res = self._blocks(coord[f], atype[f], b)
            else:
                res = self._runner_for(atype[f].size).full(coord[f], atype[f], b, atomic)
                self._check_neighbors(res[5], res[6], coord[f], b)
            for k, v in zip(("energy", "force", "virial", "atom_energy", "atom_virial"), res):
                if k in out:
                    out[k][f] = v.reshape(out[k][f].shape)
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
            for c in range(0, na, self.atom_budget):
                centre = np.arange(c, min(na, c + self.atom_budget), dtype=np.int64)
                out[f, centre] = self._runner.desc(coord[f], atype[f], np.ascontiguousarray(nlist[:, centre]),
                                                   np.ascontiguousarray(shift[:, centre]), centre)
        return out

    # ---------------------------------------------------------------- internals
    def _inputs(self, coords, cells, atom_types, **kwargs):
        """float64 coord [nf,na,3], box [nf,9] or None, int32 atype [nf,na]; clear errors (eval_args)."""
        return eval_inputs(coords, cells, atom_types, self.type_map, self.get_rcut(), **kwargs)

    def _neighbor_list(self, coord, atype, box):
        """(nlist [nf,na,nnei] int32, shift [nf,na,nnei,3]) for the whole frames, checked."""
        from . import ops

        t = paddle.to_tensor
        c, a, b = t(coord), t(atype), None if box is None else t(box)
        if self._use_op or ops.load_op() is not None:  # the same list; O(N) instead of O(N^2)
            # the inputs passed check_inputs in _prepare: no second check
            nlist, shift, nmax, mindist = ops.neighbor_list(c, b, a, self.get_rcut(), self.get_sel(), check=False)
        else:
            from .model.env_mat import neighbor_list_paddle

            nlist, shift, nmax, mindist = neighbor_list_paddle(c, b, a, self.get_rcut(), self.get_sel())
        self._check_neighbors(nmax.numpy(), mindist.numpy(), coord, box)
        return nlist.numpy(), shift.numpy()

    def runner_for(self, atoms: int):
        """The program runner this DeepPot uses for a call of ``atoms`` atoms (its backend
        choice). Its ``lower(coord, atype, nlist, shift, centre)`` evaluates a block of centre
        atoms (at most ``atom_budget``) with a neighbour list given by the caller: energies of
        the centres, forces and virials on all atoms (the LAMMPS pair style uses it)."""
        return self._runner_for(atoms)

    def _runner_for(self, atoms: int):
        """The runner of a call with ``atoms`` atoms (frames x atoms): see ``auto`` above."""
        large = getattr(self, "_large", None)
        return large if large is not None and atoms >= AUTO_PREDICTOR_ATOMS else self._runner

    def _blocks(self, coord, atype, box):
        """Frames larger than the budget: blocks of centre atoms through the lower program."""
        nf, na = atype.shape
        nlist, shift = self._neighbor_list(coord, atype, box)
        force, virial = np.zeros([nf, na, 3]), np.zeros([nf, 9])
        atom_energy, atom_virial = np.empty([nf, na, 1]), np.zeros([nf, na, 9])
        for c in range(0, na, self.atom_budget):
            centre = np.arange(c, min(na, c + self.atom_budget), dtype=np.int64)
            ae, f, v, av = self._runner_for(na).lower(coord, atype, np.ascontiguousarray(nlist[:, centre]),
                                              np.ascontiguousarray(shift[:, centre]), centre)
            atom_energy[:, centre] = ae
            force += f
            virial += v
            atom_virial += av
        return atom_energy.sum(axis=1), force, virial, atom_energy, atom_virial

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
def types_from_symbols(symbols, type_map, type_dict: dict | None = None) -> np.ndarray:
    """Type indices of element names; an unknown name raises ValueError naming the allowed ones."""
    lookup = dict(type_dict) if type_dict else {name: i for i, name in enumerate(type_map)}
    symbols = np.asarray(symbols)
    unknown = sorted(set(symbols.reshape(-1).tolist()) - set(lookup))
    if unknown:
        raise ValueError(f"element(s) {unknown} are not in the model's type map {list(type_map)}"
                         + (" (nor in type_dict)" if type_dict else ""))
    return np.vectorize(lookup.__getitem__, otypes=[np.int32])(symbols)


def read_meta(prefix: str) -> dict:
    path = prefix + export.META_SUFFIX
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ModelFileError(f"{path}: not a readable frozen-model description ({e})") from None
    if meta.get("format") != export.FORMAT:
        raise ModelFileError(f"{path}: format {meta.get('format')!r}, expected {export.FORMAT!r} "
                             "(freeze the model again with this version)")
    missing = [prefix + s + e for s, _, _ in export.PROGRAMS.values() for e in (".json", ".pdiparams")
               if not os.path.isfile(prefix + s + e)]
    if missing:
        raise ModelFileError(f"frozen model {prefix!r} is incomplete: missing {missing}")
    return meta


def _meta_of(model) -> dict:
    d = model.descriptor
    return {"type_map": list(model.type_map), "rcut": d.rcut, "sel": list(d.sel),
            "dim_descriptor": d.get_dim_out(), "model_def_script": model.get_config()}


def _register_op(prefix: str, meta: dict) -> None:
    from . import ops

    if ops.load_op() is None:
        raise RuntimeError(f"{prefix}: this model was frozen with the C++ operator, which is not available in "
                           "this process (see the warning above). Freeze it again with `dpp freeze --portable` "
                           "for a plain-Paddle graph, or make a C++ compiler available.")
    current = export.custom_op_signatures()
    changed = sorted(op for op, sig in meta.get("custom_ops", {}).items() if current.get(op) != sig)
    if changed:
        raise ModelFileError(f"{prefix}: frozen with another version of the C++ operator(s) {changed} (inputs or "
                             "attributes differ, and Paddle would abort running it); freeze the model again "
                             "with this version of deepmd_paddle")


def _atom_budget(value) -> int:
    raw = value if value is not None else os.environ.get(ATOM_BUDGET_ENV) or DEFAULT_ATOM_BUDGET
    try:
        budget = int(raw)
    except (TypeError, ValueError):
        raise ValueError(f"atom budget ({ATOM_BUDGET_ENV}) must be a positive integer, got {raw!r}") from None
    if budget <= 0:
        raise ValueError(f"atom budget ({ATOM_BUDGET_ENV}) must be a positive integer, got {raw!r}")
    return budget


def _threads() -> int:
    raw = os.environ.get(THREADS_ENV, "")
    if raw.strip() not in ("", "0"):
        return max(1, int(raw))
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def load_evaluator(path) -> DeepPot:
    """What ``dpp test`` evaluates: any model ``DeepPot`` reads."""
    return DeepPot(path)
