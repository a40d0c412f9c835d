"""Freeze an energy model into static Paddle programs (``dpp freeze``).

``freeze(source, prefix)`` traces the model with ``paddle.jit.to_static(full_graph=True)`` and
writes with ``paddle.jit.save`` (frames and atoms are dynamic dimensions in every program)::

    prefix.json / .pdiparams         periodic:  coord [nf,na,3] f64, atype [nf,na] i32, box [nf,9] f64
    prefix.nopbc.json / .pdiparams   open boundaries: coord, atype
        -> energy [nf,1], force [nf,na,3], virial [nf,9], atom_energy [nf,na,1],
           atom_virial [nf,na,9], nmax [nf,ntypes] i32, mindist [nf]
    prefix.lower.json / .pdiparams   a block of centre atoms with a given neighbour list:
        coord [nf,na,3], atype [nf,na], nlist [nf,nc,nnei] i32, shift [nf,nc,nnei,3], centre [nc] i64
        -> atom_energy [nf,nc,1], force [nf,na,3], virial [nf,9], atom_virial [nf,na,9]
           (the block's share: forces and virials of all blocks add up to the whole frame's)
    prefix.desc.json / .pdiparams    same inputs as lower -> descriptor [nf,nc,ndesc]
    prefix.meta                      JSON: type_map, rcut, sel, precision, version, uses_custom_op, ...

The file names follow Paddle's convention for a Layer with several static methods:
``paddle.jit.load(prefix)`` returns one layer whose ``forward`` is the periodic program and whose
``nopbc``, ``lower`` and ``desc`` methods are the others, sharing one set of parameters. (That is
also why the meta file is not ``prefix.meta.json``: jit.load would read it as a program.)

Two full programs rather than one with a periodic flag: the model branches in Python on
``box is None`` (the neighbour search differs), and a static ``cond`` around the whole model
would carry both searches in every call; the weights are small, so the duplication is cheap.
``nmax`` and ``mindist`` come out of the graph so that the caller can refuse overlapping atoms
and warn on neighbours beyond ``sel`` (the model's own checks run in dynamic mode only).

The lower program is what lets one frame of 10^5 atoms run in bounded memory: the caller
builds the neighbour list once, then evaluates centre atoms block by block and adds the
forces up (``deepmd_paddle.infer``). ``r_ij = coord[j] + shift - coord[i]`` as in the model.

``portable=True`` traces the plain-Paddle neighbour list and environment matrix: the result
loads anywhere Paddle does, without the C++ operator (slower: its neighbour search is O(N^2)).
A graph traced with the operator needs it registered before loading: ``deepmd_paddle.infer``
does that itself (``ops.load_op()``).
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os

import paddle
from paddle.static import InputSpec

from . import __version__
from .model import EnergyModel

FORMAT = "deepmd_paddle.frozen/1"
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
META_SUFFIX = ".meta"  # not ".meta.json": jit.load reads every <prefix>.<name>.json as a program
MODEL_SUFFIXES = (META_SUFFIX, ".pdiparams", ".json")


# ----------------------------------------------------------------------------- source models
def load_model(source) -> EnergyModel:
    """An ``EnergyModel`` (eval mode) from a model object, a DeePMD-kit ``.dp``/``.yaml``/``.pb`` file or a
    training checkpoint (folder with a ``checkpoint`` pointer, ``<prefix>-<step>`` or either file)."""
    if isinstance(source, EnergyModel):
        return source.eval()
    path = os.fspath(source)
    ext = os.path.splitext(path)[1].lower()
    if ext == ".pb":  # DeePMD-kit's frozen TensorFlow graph, read without TensorFlow
        from .interop.tf_graph import load_pb

        return load_pb(path).eval()
    if ext in (".pth", ".pt", ".savedmodel"):
        raise ValueError(f"{path}: a DeePMD-kit PyTorch model cannot be read directly; convert it "
                         f"with `dp convert-backend {os.path.basename(path)} model.dp` and use the .dp file")
    if ext in (".dp", ".yaml", ".yml"):
        from .interop.dp_format import load_dp

        return load_dp(path).eval()
    try:
        from .train import checkpoint
    except ImportError as e:  # the training package is optional here
        raise ValueError(f"{path}: not a .dp/.yaml model, and checkpoints cannot be read ({e})") from None
    try:
        return checkpoint.load_model(path)
    except checkpoint.CheckpointError as e:
        raise ValueError(f"{path}: not a model. Expected a DeePMD-kit .dp/.yaml file or a training checkpoint "
                         f"(<prefix>-<step>.safetensors + .json, or a folder with a `checkpoint` file): {e}") from None


def frozen_prefix(path) -> str | None:
    """The prefix of a frozen model named by ``path`` (prefix, ``.json``, ``.pdiparams`` or
    ``.meta``), or None when no ``<prefix>.meta`` is there."""
    path = os.fspath(path)
    for suffix in MODEL_SUFFIXES:
        if path.endswith(suffix):
            path = path[: -len(suffix)]
            break
    return path if os.path.isfile(path + META_SUFFIX) else None


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
def _record(seen: dict, nlist_out) -> None:
    """(AST conversion garbles item assignment to a captured dict: keep this plain Python.)"""
    seen["nmax"], seen["mindist"] = nlist_out[2], nlist_out[3]


# Operators that may enter a frozen graph: they set InferShape/InferDtype functions. Paddle aborts
# the whole process (SIGABRT, not an exception) when an operator with several inputs and
# without them is traced into a static graph. While tracing, the model sees only these
# (``hasattr(lib, name)`` is False for the others), so an optional fused path whose operator
# is not listed falls back to plain Paddle. Add an operator here once it has both functions.
STATIC_OPS = ("deepmd_neighbor_list", "deepmd_env_mat", "bias_tanh", "se_a_embed", "se_a_embed_train",
              "se_a_embed_cached", "se_a_tabulate", "se_a_descriptor", "deepmd_prod_force_virial",
              "deepmd_build_rij")


class _StaticOps:
    """The operator library restricted to ``STATIC_OPS``."""

    def __init__(self, lib):
        self.names = tuple(n for n in STATIC_OPS if hasattr(lib, n))
        for name in self.names:
            setattr(self, name, getattr(lib, name))


@contextlib.contextmanager
def _tracing(model: EnergyModel, use_op: bool):
    """Prepare the model instance for ``to_static``; it is unchanged afterwards.

    - ``ops.load_op()`` returns the library restricted to ``STATIC_OPS`` (see there).
    - The parameters are constants (``stop_gradient``): the backward pass for forces then
      computes no weight gradients (half of every matmul_grad, all the bias reductions), and
      the model picks its evaluation-only fused embedding.
    - ``nmax`` and ``mindist`` of the neighbour search are recorded so that the full programs
      can return them (the model's outputs are energies and derivatives only).
    """
    from . import ops

    load_op = ops.load_op
    lib = load_op() if use_op else None
    ops.load_op = paddle.jit.not_to_static(lambda: None if lib is None else _StaticOps(lib))
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
        ops.load_op = load_op


class FullProgram(paddle.nn.Layer):
    """The whole model on whole frames, atomic outputs included (see ``PROGRAMS``)."""

    def __init__(self, model: EnergyModel, seen: dict):
        super().__init__()
        self.model = model
        self.seen = seen

    def forward(self, coord, atype, box=None):
        out = self.model(coord, atype, box, do_atomic_virial=True, check=False)
        return (out["energy"], out["force"], out["virial"], out["atom_energy"], out["atom_virial"],
                self.seen["nmax"], self.seen["mindist"])


def _embedding_mode(model: EnergyModel):
    """The embedding path ``EnergyModel.forward`` takes without second derivatives (the fused
    evaluation operator when the weights are constants). Mirrors forward: see the report's
    request for an ``EnergyModel.forward_lower``."""
    return model._embedding_mode(None, False)


def block_rij(coord, atype, nlist, shift, centre):
    """(r_ij nf x nc x nnei x 3, centre types nf x nc) of the centre atoms ``centre`` (nc)."""
    nf, nc, nnei = nlist.shape[0], nlist.shape[1], nlist.shape[2]
    xc = paddle.gather(coord, centre, axis=1)  # nf x nc x 3
    tc = paddle.gather(atype, centre, axis=1)  # nf x nc
    idx = paddle.clip(nlist, min=0).astype("int64").reshape([nf, -1, 1])
    idx = paddle.expand(idx, [nf, idx.shape[1], 3])
    cj = paddle.take_along_axis(coord, idx, axis=1).reshape([nf, nc, nnei, 3])
    return cj + shift - xc.unsqueeze(2), tc


def _scatter(val, index, nall):
    """out[f, index[f, a]] += val[f, a] for val nf x n x k, index nf x n in [0, nall)."""
    nf, k = val.shape[0], val.shape[-1]
    frame = (paddle.arange(nf, dtype="int64") * nall).reshape([nf, 1])
    out = paddle.zeros([nf * nall, k], dtype=val.dtype)
    out = paddle.index_add(out, (index + frame).reshape([-1]), 0, val.reshape([-1, k]))
    return out.reshape([nf, nall, k])


class LowerProgram(paddle.nn.Layer):
    """Energy of a block of centre atoms and its share of forces and virials on all atoms.

    With ``g_ij = dE/dr_ij``: the centre gets ``+sum_j g_ij``, the neighbour ``-g_ij``, the
    virial ``-sum g_ij (x) r_ij`` and the atomic virial puts each pair on its neighbour j, as
    ``EnergyModel.forward`` does for whole frames."""

    def __init__(self, model: EnergyModel):
        super().__init__()
        self.model = model

    def forward(self, coord, atype, nlist, shift, centre):
        nf, nall = coord.shape[0], coord.shape[1]
        nc, nnei = nlist.shape[1], nlist.shape[2]
        rij = self.model.rij_no_graph(coord, nlist, shift, centre)  # nf x nc x nnei x 3
        if rij is None:
            rij, tc = block_rij(coord, atype, nlist, shift, centre)
        else:
            tc = paddle.gather(atype, centre, axis=1)  # nf x nc
        if rij.stop_gradient:
            rij.stop_gradient = False
        env = self.model.descriptor.env_mat(rij, nlist, tc)  # nf x nc x nnei x 4
        atom_e = self.model.atomic_energy(env, tc, _embedding_mode(self.model))  # nf x nc x 1
        (g,) = paddle.grad(atom_e.sum(), rij)  # nf x nc x nnei x 3
        fused = self.model.prod_force_virial(coord, g, rij, nlist, centre)
        if fused is not None:
            return atom_e, fused[0], fused[1], fused[2]
        j = paddle.clip(nlist.astype("int64"), min=0).reshape([nf, -1])  # padded slots carry g = 0
        ci = paddle.expand(centre.reshape([1, nc]), [nf, nc])
        force = _scatter(g.sum(axis=2), ci, nall) - _scatter(g.reshape([nf, -1, 3]), j, nall)
        virial = -paddle.matmul(g.reshape([nf, -1, 3]), rij.reshape([nf, -1, 3]), transpose_x=True)
        pair = -(g.unsqueeze(-1) * rij.unsqueeze(-2)).reshape([nf, nc * nnei, 9])
        return atom_e, force, virial.reshape([nf, 9]), _scatter(pair, j, nall)


class DescriptorProgram(paddle.nn.Layer):
    """The se_e2_a descriptor of a block of centre atoms (nf x nc x ndesc)."""

    def __init__(self, model: EnergyModel):
        super().__init__()
        self.model = model

    def forward(self, coord, atype, nlist, shift, centre):
        desc = self.model.descriptor
        nf, nc, nnei = nlist.shape[0], nlist.shape[1], nlist.shape[2]
        rij, tc = block_rij(coord, atype, nlist, shift, centre)
        flat = desc.env_mat(rij, nlist, tc).reshape([-1, nnei, 4])
        at = tc.reshape([-1])
        parts, index = [], []
        for ti in range(desc.ntypes):  # one block per centre type, as EnergyModel.atomic_energy
            idx = paddle.nonzero(at == ti).reshape([-1])
            if paddle.in_dynamic_mode() and idx.shape[0] == 0:
                continue
            parts.append(desc(paddle.gather(flat, idx), ti, _embedding_mode(self.model)).astype("float64"))
            index.append(idx)
        return EnergyModel.in_atom_order(parts, index).reshape([nf, nc, -1])


def _save(layer: paddle.nn.Layer, name: str, prefix: str) -> None:
    suffix, inputs, _ = PROGRAMS[name]
    spec = [InputSpec(_SPECS[k][0], _SPECS[k][1], k) for k in inputs]
    layer.eval()
    static = paddle.jit.to_static(layer, input_spec=spec, full_graph=True)
    paddle.jit.save(static, prefix + suffix)


# ----------------------------------------------------------------------------- freeze
def custom_op_signatures() -> dict:
    """``{operator: [inputs, outputs, [attribute, type code]...]}`` of the registered operators in
    ``STATIC_OPS`` and their gradients. A graph holds an operator's attributes by name and type:
    when they change, Paddle aborts the process while running it (no exception), so a frozen
    model records them and ``DeepPot`` compares before loading."""
    from paddle.base.framework import OpProtoHolder

    out = {}
    for name in STATIC_OPS:
        for op in (name, name + "_grad"):
            try:
                proto = OpProtoHolder.instance().get_op_proto(op)
            except ValueError:
                continue
            attrs = sorted([a.name, int(a.type)] for a in proto.attrs if not a.name.startswith(("op_", "with_quant")))
            out[op] = [[i.name for i in proto.inputs], [o.name for o in proto.outputs], attrs]
    return out


def freeze(source, output_prefix: str, portable: bool = False) -> dict:
    """Write the frozen programs and ``<prefix>.meta`` (see the module docstring).

    ``source``: a checkpoint, a ``.dp``/``.yaml`` file or an ``EnergyModel``. ``portable``: trace
    the plain-Paddle path (no C++ operator needed to load). Returns the meta dict.
    """
    model = load_model(source)
    prefix = os.fspath(output_prefix)
    for suffix in MODEL_SUFFIXES:
        if prefix.endswith(suffix):
            prefix = prefix[: -len(suffix)]
            break
    if not portable:
        from . import ops

        if ops.load_op() is None:
            raise RuntimeError("the C++ operator is not available in this process (see the warning above); "
                               "freeze with portable=True (`dpp freeze --portable`) for a plain-Paddle graph")
    folder = os.path.dirname(os.path.abspath(prefix))
    os.makedirs(folder, exist_ok=True)
    previous = model.descriptor.use_op
    model.set_use_op(not portable)
    try:
        with _tracing(model, use_op=not portable) as seen:
            _save(FullProgram(model, seen), "pbc", prefix)
            if not seen:
                raise RuntimeError("export: the model no longer calls descriptor.neighbor_list; "
                                   "update deepmd_paddle.export._tracing")
            _save(FullProgram(model, seen), "nopbc", prefix)
            _save(LowerProgram(model), "lower", prefix)
            _save(DescriptorProgram(model), "desc", prefix)
    finally:
        model.set_use_op(previous)
    d = model.descriptor
    meta = {
        "format": FORMAT, "software": "deepmd_paddle", "version": __version__, "paddle_version": paddle.__version__,
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "type_map": list(model.type_map), "ntypes": model.ntypes, "rcut": d.rcut, "rcut_smth": d.rcut_smth,
        "sel": list(d.sel), "nnei": d.nnei, "dim_descriptor": d.get_dim_out(),
        "precision": {"descriptor": d.precision, "fitting": model.fitting.precision, "io": "float64"},
        "uses_custom_op": not portable, "custom_ops": {} if portable else custom_op_signatures(),
        "dim_fparam": 0, "dim_aparam": 0,
        "min_nbor_dist": getattr(model, "min_nbor_dist", None),
        "programs": {name: {"file": os.path.basename(prefix) + suffix + ".json", "inputs": inputs, "outputs": outputs}
                     for name, (suffix, inputs, outputs) in PROGRAMS.items()},
        "model_def_script": model.get_config(),
    }
    tmp = prefix + META_SUFFIX + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=1)
    os.replace(tmp, prefix + META_SUFFIX)  # written last: a meta file means a complete model
    return meta


# ----------------------------------------------------------------------------- CLI hooks
def add_freeze_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of ``dpp freeze`` (DeePMD-kit's ``dp freeze -c ... -o ...``)."""
    parser.add_argument("-c", "--checkpoint-folder", "--checkpoint", dest="checkpoint", default=".",
                        help="checkpoint folder (with a `checkpoint` pointer file), checkpoint file, or a "
                             "DeePMD-kit .dp/.yaml model (default: .)")
    parser.add_argument("-o", "--output", default="frozen_model",
                        help="output prefix: writes PREFIX.json, PREFIX.pdiparams, PREFIX.meta, ... "
                             "(default: frozen_model)")
    parser.add_argument("--portable", action="store_true",
                        help="export the plain-Paddle graph: loads without the C++ operator, slower")
    return parser


def freeze_main(args: argparse.Namespace) -> int:
    meta = freeze(args.checkpoint, args.output, portable=args.portable)
    prefix = args.output[: -len(".json")] if args.output.endswith(".json") else args.output
    kind = "portable plain-Paddle" if args.portable else "C++-operator"
    print(f"froze {args.checkpoint} -> {prefix}.json ({kind} graph; type_map {meta['type_map']}, "
          f"rcut {meta['rcut']}, sel {meta['sel']})")
    return 0
