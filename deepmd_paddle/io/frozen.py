"""Freeze an energy model into static Paddle programs (``dpp freeze``).

``freeze(source, path)`` traces the model with ``paddle.jit.to_static(full_graph=True)``, saves
each program with ``paddle.jit.save`` into a private folder (frames and atoms are dynamic
dimensions in every program) and packs them, with the model's weights and a JSON description,
into ONE file at exactly ``path`` (default ``frozen_model.pb``; layout in ``io.frozen_file``)::

    model.json / .pdiparams         periodic:  coord [nf,na,3] f64, atype [nf,na] i32, box [nf,9] f64
    model.nopbc.json / .pdiparams   open boundaries: coord, atype
        -> energy [nf,1], force [nf,na,3], virial [nf,9], atom_energy [nf,na,1],
           atom_virial [nf,na,9], nmax [nf,ntypes] i32, mindist [nf]
    model.lower.json / .pdiparams   a block of centre atoms with a given neighbour list:
        coord [nf,na,3], atype [nf,na], nlist [nf,nc,nnei] i32, shift [nf,nc,nnei,3], centre [nc] i64
        -> atom_energy [nf,nc,1], force [nf,na,3], virial [nf,9], atom_virial [nf,na,9]
           (the block's share: forces and virials of all blocks add up to the whole frame's)
    model.desc.json / .pdiparams    same inputs as lower -> descriptor [nf,nc,ndesc]
    (a model with frame/atomic parameters: the pbc, nopbc and lower programs take fparam [nf,nfp]
     and/or aparam [nf,na,nap] (lower: [nf,nc,nap], the centre atoms') as their last inputs)
    model.safetensors               weights and statistics (rebuild the model: convert, compress)
    deepmd_paddle_frozen.json       type_map, rcut, sel, precision, version, uses_custom_op,
                                    min_nbor_dist, model_def_script, sha256 of each member, ...

The file names follow Paddle's convention for a Layer with several static methods:
``paddle.jit.load(prefix)`` returns one layer whose ``forward`` is the periodic program and whose
``nopbc``, ``lower`` and ``desc`` methods are the others, sharing one set of parameters.

Two full programs rather than one with a periodic flag: the model branches in Python on
``box is None`` (the neighbour search differs), and a static ``cond`` around the whole model
would carry both searches in every call; the weights are small, so the duplication is cheap.
``nmax`` and ``mindist`` come out of the graph so that the caller can refuse overlapping atoms
and warn on neighbours beyond ``sel`` (the model's own checks run in dynamic mode only).

Every program is a thin adapter around the model's one path: ``forward`` (neighbour search +
``forward_lower``), ``forward_lower`` and ``descriptor_lower``. The lower program is what lets
one frame of 10^5 atoms run in bounded memory: the caller builds the neighbour list once, then
evaluates centre atoms block by block and adds the forces up (``deepmd_paddle.infer.blocks``).

The programs are traced with the model's kernels set to the ``static`` backend (the C++
operators that may enter a frozen graph), or with ``portable=True`` to the ``paddle`` backend:
the plain-Paddle twins, a graph that loads anywhere Paddle does, without the C++ operators
(slower: its neighbour search is O(N^2)). A graph traced with the operators needs them
registered before loading: ``deepmd_paddle.infer`` does that itself.
"""
from __future__ import annotations

import contextlib
import datetime
import os
import shutil
import tempfile

import numpy as np
import paddle
from paddle.static import InputSpec

from .._version import __version__
from ..kernels import backend, build, static_operators
from ..model import EnergyModel
from .frozen_file import (FORMAT, META_SUFFIX, STEM, WEIGHTS, ModelFileError, frozen_prefix,  # noqa: F401
                          meta_checksum, open_frozen, program_members, write_frozen_file)
from .load import load_model

DEFAULT_OUTPUT = "frozen_model.pb"  # DeePMD-kit's name; the content, not the name, says what a file is
# program -> (file suffix, input names, output names); the single source of the export spec
PROGRAMS = {
    "pbc": ("", ["coord", "atype", "box"],
            ["energy", "force", "virial", "atom_energy", "atom_virial", "nmax", "mindist"]),
    "nopbc": (".nopbc", ["coord", "atype"],
              ["energy", "force", "virial", "atom_energy", "atom_virial", "nmax", "mindist"]),
    "lower": (".lower", ["coord", "atype", "nlist", "shift", "centre"],
              ["atom_energy", "force", "virial", "atom_virial"]),
    "desc": (".desc", ["coord", "atype", "nlist", "shift", "centre"], ["descriptor"]),
}
_SPECS = {
    "coord": ([None, None, 3], "float64"), "atype": ([None, None], "int32"), "box": ([None, 9], "float64"),
    "nlist": ([None, None, None], "int32"), "shift": ([None, None, None, 3], "float64"), "centre": ([None], "int64"),
}
PARAM_INPUTS = ("pbc", "nopbc", "lower")  # the programs that take fparam/aparam (the descriptor does not)


# ----------------------------------------------------------------------------- programs
class _Hook:
    """Calls ``fn``; with ``seen`` also records ``nmax`` and ``mindist`` of a neighbour search.
    (A callable object, not a closure: to_static does not convert closures reliably.)"""

    def __init__(self, fn, seen=None):
        self.fn, self.seen = fn, seen

    def __call__(self, *args, **kwargs):
        out = self.fn(*args, **kwargs)
        if self.seen is not None:
            _record(self.seen, out)
        return out


@paddle.jit.not_to_static
def _pick(slots: list, values: tuple) -> tuple:
    """(box, fparam, aparam) from the optional inputs of a program, named by ``slots``."""
    named = dict(zip(slots, values))
    return named.get("box"), named.get("fparam"), named.get("aparam")


def param_inputs(model) -> list:
    """The frame/atomic parameter inputs of the model's programs: [] or ["fparam"], ["aparam"], both."""
    cfg = model.fitting.input_config()
    return [k for k in ("fparam", "aparam") if cfg[f"numb_{k}"]]


@paddle.jit.not_to_static
def _record(seen: dict, nlist_out) -> None:
    """(AST conversion garbles item assignment to a captured dict: keep this plain Python.)"""
    seen["nmax"], seen["mindist"] = nlist_out[2], nlist_out[3]


@contextlib.contextmanager
def _tracing(model: EnergyModel, portable: bool):
    """Prepare the model instance for ``to_static``; it is unchanged afterwards.

    - The kernels are the ``static`` backend (C++ operators that may enter a frozen graph: an
      operator without InferShape/InferDtype would abort the process) or, ``portable``, the
      plain-Paddle ``paddle`` backend.
    - The parameters are constants (``stop_gradient``): the backward pass for forces then
      computes no weight gradients (half of every matmul_grad, all the bias reductions), and
      the model picks its evaluation-only fused embedding.
    - ``nmax`` and ``mindist`` of the neighbour search are recorded so that the full programs
      can return them (the model's outputs are energies and derivatives only).
    """
    previous = model.kernels
    model.set_kernels(backend("paddle" if portable else "static"))
    constants = [p for p in model.parameters() if not p.stop_gradient]
    for p in constants:
        p.stop_gradient = True
    desc = model.descriptor
    seen: dict = {}
    desc.neighbor_list = _Hook(desc.neighbor_list, seen)
    try:
        yield seen
    finally:
        del desc.neighbor_list
        for p in constants:
            p.stop_gradient = False
        model.set_kernels(previous)


class FullProgram(paddle.nn.Layer):
    """The whole model on whole frames, atomic outputs included (see ``PROGRAMS``)."""

    def __init__(self, model: EnergyModel, seen: dict, slots: list = ("box",)):
        super().__init__()
        self.model = model
        self.seen = seen
        self.slots = list(slots)  # the names of the optional inputs: box (pbc), fparam, aparam

    def forward(self, coord, atype, x2=None, x3=None, x4=None):
        box, fparam, aparam = _pick(self.slots, (x2, x3, x4))
        out = self.model(coord, atype, box, do_atomic_virial=True, check=False, fparam=fparam, aparam=aparam)
        return (out["energy"], out["force"], out["virial"], out["atom_energy"], out["atom_virial"],
                self.seen["nmax"], self.seen["mindist"])


class LowerProgram(paddle.nn.Layer):
    """A block of centre atoms with a given neighbour list: ``EnergyModel.forward_lower``."""

    def __init__(self, model: EnergyModel, slots: list = ()):
        super().__init__()
        self.model = model
        self.slots = list(slots)  # fparam, aparam (those the model takes)

    def forward(self, coord, atype, nlist, shift, centre, x5=None, x6=None):
        _, fparam, aparam = _pick(self.slots, (x5, x6))
        out = self.model.forward_lower(coord, atype, nlist, shift, centre, do_atomic_virial=True, fparam=fparam,
                                       aparam=aparam)
        return out["atom_energy"], out["force"], out["virial"], out["atom_virial"]


class DescriptorProgram(paddle.nn.Layer):
    """The se_e2_a descriptor of a block of centre atoms: ``EnergyModel.descriptor_lower``."""

    def __init__(self, model: EnergyModel):
        super().__init__()
        self.model = model

    def forward(self, coord, atype, nlist, shift, centre):
        return self.model.descriptor_lower(coord, atype, nlist, shift, centre)


def _save(layer: paddle.nn.Layer, name: str, prefix: str) -> None:
    suffix, inputs, _ = PROGRAMS[name]
    params = [k for k in getattr(layer, "slots", []) if k != "box"]  # fparam, aparam: the model's last inputs
    spec = [InputSpec(_SPECS[k][0], _SPECS[k][1], k) for k in inputs]
    spec += [InputSpec([None, None] if k == "fparam" else [None, None, None], "float64", k) for k in params]
    layer.eval()
    static = paddle.jit.to_static(layer, input_spec=spec, full_graph=True)
    paddle.jit.save(static, prefix + suffix)


# ----------------------------------------------------------------------------- freeze
def custom_op_signatures() -> dict:
    """``{operator: [inputs, outputs, [attribute, type code]...]}`` of the registered operators in
    ``kernels.static_operators()`` and their gradients. A graph holds an operator's attributes by name and type:
    when they change, Paddle aborts the process while running it (no exception), so a frozen
    model records them and ``DeepPot`` compares before loading."""
    from paddle.base.framework import OpProtoHolder

    out = {}
    for name in static_operators():
        for op in (name, name + "_grad"):
            try:
                proto = OpProtoHolder.instance().get_op_proto(op)
            except ValueError:
                continue
            attrs = sorted([a.name, int(a.type)] for a in proto.attrs if not a.name.startswith(("op_", "with_quant")))
            out[op] = [[i.name for i in proto.inputs], [o.name for o in proto.outputs], attrs]
    return out


def freeze(source, output: str = DEFAULT_OUTPUT, portable: bool = False, precision: str | None = None) -> dict:
    """Write the frozen model to exactly ``output``, one file (``io.frozen_file``). ``source``: a
    checkpoint, a ``.dp``/``.yaml``/``.pb`` file, a frozen model of this format or an
    ``EnergyModel``. ``portable``: trace the plain-Paddle path (no C++ operator needed to load).
    ``precision`` (float64, float32): evaluate the nets in it, whatever they were trained in
    (``io.precision``: weights cast once, the error on one frame measured and recorded).
    Returns the description written into the file."""
    from safetensors.numpy import save

    from .precision import PRECISIONS, in_precision

    if precision is not None and precision not in PRECISIONS:
        raise ValueError(f"freeze: precision {precision!r}; allowed: {', '.join(PRECISIONS)}")
    model, cast = in_precision(load_model(source), precision, source)
    output = os.fspath(output)
    if os.path.isdir(output):
        raise IsADirectoryError(f"dpp freeze: {output} is a folder; give the model's file name (e.g. {DEFAULT_OUTPUT})")
    if not portable and build.load_library() is None:
        raise RuntimeError("the C++ operators are not available in this process (see the warning above); "
                           "freeze with portable=True (`dpp freeze --portable`) for a plain-Paddle graph")
    members = {}
    staging = tempfile.mkdtemp(prefix="deepmd_paddle_freeze_")  # private; the programs are packed from here
    try:
        prefix = os.path.join(staging, STEM)
        params = param_inputs(model)
        with _tracing(model, portable) as seen:
            _save(FullProgram(model, seen, ["box"] + params), "pbc", prefix)
            if not seen:
                raise RuntimeError("export: the model no longer calls descriptor.neighbor_list; "
                                   "update deepmd_paddle.io.frozen._tracing")
            _save(FullProgram(model, seen, params), "nopbc", prefix)
            _save(LowerProgram(model, params), "lower", prefix)
            _save(DescriptorProgram(model), "desc", prefix)
        for name in program_members():
            with open(os.path.join(staging, name), "rb") as f:
                members[name] = f.read()
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    members[WEIGHTS] = save({k: np.ascontiguousarray(v.numpy()) for k, v in model.state_dict().items()})
    d = model.descriptor
    meta = {
        "software": "deepmd_paddle", "version": __version__, "paddle_version": paddle.__version__,
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "type_map": list(model.type_map), "ntypes": model.ntypes, "rcut": d.rcut, "rcut_smth": d.rcut_smth,
        "sel": list(d.sel), "nnei": d.nnei, "dim_descriptor": d.get_dim_out(),
        "precision": {"descriptor": d.precision, "fitting": model.fitting.precision, "io": "float64",
                      **({"cast": cast} if cast else {})},
        "uses_custom_op": not portable, "custom_ops": {} if portable else custom_op_signatures(),
        **{f"dim_{k}": model.fitting.input_config()[f"numb_{k}"] for k in ("fparam", "aparam")},
        "default_fparam": model.fitting.input_config()["default_fparam"],
        "min_nbor_dist": model.min_nbor_dist,
        "programs": {name: {"file": STEM + suffix + ".json",
                            "inputs": inputs + (params if name in PARAM_INPUTS else []), "outputs": outputs}
                     for name, (suffix, inputs, outputs) in PROGRAMS.items()},
        "model_def_script": model.get_config(),
    }
    return write_frozen_file(output, meta, members)  # adds the members' sha256 and the checksum
