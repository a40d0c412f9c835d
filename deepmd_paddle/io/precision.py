"""A model evaluated in another floating-point precision than it was trained in
(``dpp freeze --precision float32``), and the error that costs, measured and stated.

DeePMD-kit's ``precision`` keys (``descriptor``, ``fitting_net``, ``type_embedding``) name the
precision of the nets' weights and matrix work; the environment matrix, the statistics
(davg, dstd), the energy biases, the sum of atomic energies, forces and virials stay float64,
and a model takes float64 coordinates and returns float64 energies, forces and virials, as
DeePMD-kit's ``DeepPot`` does. DeePMD-kit has no switch to evaluate a float64-trained model in
float32; here ``cast_model`` rebuilds the model with every ``precision`` key set to the target
and its weights cast once (float64 -> float32 rounds each weight to the nearest float32, relative
change at most 2^-24 ~ 6e-8), and ``cast_error`` evaluates one frame both ways, so that the
frozen file can say what the cast costs (``io.frozen.freeze`` records it; ``dpp show`` prints it).

The frame: the first frame of the first training system named by the checkpoint's own input,
when the model comes from a checkpoint and that data is still there; otherwise a generated
periodic frame (``synthetic_frame``): a jittered cubic lattice at the density that fills about
60 % of ``sel`` within rcut (less when a type would overflow its slots), types in the
proportions of ``sel``.
"""
from __future__ import annotations

import copy
import json
import logging
import os

import numpy as np
import paddle

from ..model import EnergyModel

log = logging.getLogger(__name__)
PRECISIONS = ("float64", "float32")


def model_precision(model: EnergyModel) -> str:
    """The nets' precision: one name, or "descriptor/fitting" when they differ."""
    d, f = model.descriptor.precision, model.fitting.precision
    return d if d == f else f"{d}/{f}"


def _set_precision(cfg: dict, precision: str) -> dict:
    """The model section with every net's ``precision`` key set (type embeddings included)."""
    cfg = copy.deepcopy(cfg)
    for part in (cfg["descriptor"], cfg.get("fitting_net", {}), cfg.get("type_embedding"),
                 cfg["descriptor"].get("type_embedding")):
        if isinstance(part, dict):
            part["precision"] = precision
    if cfg.get("mixed_precision"):  # (model/mixed_precision.py: output_prec is the nets' precision)
        cfg["mixed_precision"] = dict(cfg["mixed_precision"], output_prec=precision)
    return cfg


def cast_model(model: EnergyModel, precision: str) -> EnergyModel:
    """A new model, ``model``'s architecture and weights, its nets in ``precision`` (weights cast
    once; float64 statistics and biases unchanged). ``model`` itself is left as it is."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not supported here; allowed: {', '.join(PRECISIONS)}")
    new = EnergyModel.from_config(_set_precision(model.get_config(), precision))
    target = new.state_dict()
    state = {}
    for name, value in model.state_dict().items():
        if name not in target:
            raise ValueError(f"cast to {precision}: tensor {name} has no place in the rebuilt model")
        state[name] = value.numpy().astype(str(target[name].dtype).replace("paddle.", ""))
    new.set_state_dict(state)
    for name, value in new.state_dict().items():  # set_state_dict would only warn on a mismatch
        if not np.array_equal(value.numpy(), state[name]):
            raise RuntimeError(f"cast to {precision}: tensor {name} was not taken by the rebuilt model")
    new.min_nbor_dist = model.min_nbor_dist
    new.set_kernels(model.kernels)
    return new.eval()


# ----------------------------------------------------------------------------- the frame
def synthetic_frame(model: EnergyModel, cells: int = 4, seed: int = 0) -> dict:
    """A periodic frame for any type_map: ``cells``^3 atoms on a cubic lattice, jittered by up to
    15 % of the spacing, types in the proportions of ``sel``, at the density that puts about 60 %
    of sum(sel) neighbours within rcut; lower (x0.75 a try) until no type overflows its slots."""
    d = model.descriptor
    sel = np.asarray(d.sel, dtype=float)
    n = cells ** 3
    counts = np.floor(n * sel / sel.sum()).astype(int)
    counts[np.argmax(sel)] += n - counts.sum()
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(cells)] * 3, indexing="ij"), -1).reshape(-1, 3).astype(float)
    unit = grid + rng.uniform(-0.15, 0.15, grid.shape)
    atype = rng.permutation(np.repeat(np.arange(len(sel)), counts)).astype(np.int32)[None]
    fill = 0.6
    for _ in range(8):
        a = (fill * sel.sum() / (4.0 / 3.0 * np.pi * d.rcut ** 3)) ** (-1.0 / 3.0)  # lattice spacing
        coord, box = unit[None] * a, (np.eye(3) * cells * a).reshape(1, 9)
        with paddle.no_grad():
            nmax = d.neighbor_list(paddle.to_tensor(coord), paddle.to_tensor(atype), paddle.to_tensor(box))[2]
        if (nmax.numpy() <= sel).all():
            break
        fill *= 0.75
    return {"coord": coord, "atype": atype, "box": box,
            "what": f"a generated periodic frame ({n} atoms, {a:.2f} A lattice)"}


def training_frame(source, type_map: list) -> dict | None:
    """Frame 0 of the first training system named by the input stored in checkpoint ``source``
    (paths as given, or relative to the checkpoint's folder), or None."""
    from . import checkpoint

    if not isinstance(source, (str, os.PathLike)):
        return None
    try:
        base = checkpoint.resolve(os.fspath(source))
        with open(base + ".json", encoding="utf-8") as f:
            data = json.load(f)["config"]["training"]["training_data"]
        systems, fmt = list(data["systems"]), data.get("fmt")
    except (checkpoint.CheckpointError, OSError, ValueError, KeyError, TypeError):
        return None
    from ..data.system import load_system

    for path in systems[:1]:
        for p in (path, os.path.join(os.path.dirname(base), path)):
            if os.path.exists(p.split("#")[0]):
                try:
                    s = load_system(p, type_map, fmt)
                except (OSError, ValueError):
                    return None
                return {"coord": s.coord[:1], "atype": s.atype[None], "box": None if s.box is None else s.box[:1],
                        "what": f"frame 0 of the training data {p} ({s.natoms} atoms)"}
    return None


# ----------------------------------------------------------------------------- the error
def _evaluate(model: EnergyModel, frame: dict) -> dict:
    """energy, force, virial of ``frame`` (NumPy, float64), weights as constants as in a frozen
    program (the evaluation-only embedding)."""
    trainable = [p for p in model.parameters() if not p.stop_gradient]
    for p in trainable:
        p.stop_gradient = True
    t = paddle.to_tensor
    cfg = model.fitting.input_config()
    nf, na = frame["atype"].shape
    fparam = aparam = None
    if cfg["numb_fparam"]:
        fparam = np.tile(np.asarray(cfg["default_fparam"] or np.zeros(cfg["numb_fparam"]), float), (nf, 1))
    if cfg["numb_aparam"]:
        aparam = np.zeros((nf, na, cfg["numb_aparam"]))
    try:
        out = model(t(np.asarray(frame["coord"], float)), t(frame["atype"]),
                    None if frame["box"] is None else t(np.asarray(frame["box"], float)),
                    fparam=None if fparam is None else t(fparam), aparam=None if aparam is None else t(aparam))
    finally:
        for p in trainable:
            p.stop_gradient = False
    return {k: out[k].numpy() for k in ("energy", "force", "virial")}


def cast_error(reference: EnergyModel, cast: EnergyModel, frame: dict) -> dict:
    """The cast model's difference from the reference on ``frame``: |dE|/atom (eV), max |dF|
    (eV/A, over atoms and components), max |dV|/atom (eV), each beside its magnitude in the
    reference (|E|/atom, max |F|, max |V|/atom)."""
    a, b = _evaluate(reference, frame), _evaluate(cast, frame)
    n = frame["atype"].shape[1]
    return {
        "frame": frame["what"], "natoms": int(n),
        "energy_per_atom": float(np.abs(b["energy"] - a["energy"]).max() / n),
        "force_max": float(np.abs(b["force"] - a["force"]).max()),
        "virial_per_atom": float(np.abs(b["virial"] - a["virial"]).max() / n),
        "scale": {"energy_per_atom": float(np.abs(a["energy"]).max() / n), "force_max": float(np.abs(a["force"]).max()),
                  "virial_per_atom": float(np.abs(a["virial"]).max() / n)},
    }


def describe(check: dict, trained: str, precision: str) -> str:
    """One line for logs and ``dpp show``."""
    s = check["scale"]
    return (f"trained in {trained}, evaluated in {precision}: on {check['frame']}, |dE|/atom "
            f"{check['energy_per_atom']:.2e} eV (|E|/atom {s['energy_per_atom']:.3g}), max |dF| "
            f"{check['force_max']:.2e} eV/A (max |F| {s['force_max']:.3g}), max |dV|/atom "
            f"{check['virial_per_atom']:.2e} eV (max |V|/atom {s['virial_per_atom']:.3g})")


def recorded_cast(source, precision: str) -> dict | None:
    """The cast record of ``source`` when it is a frozen model frozen in ``precision`` with
    ``--precision`` (freezing it again keeps the record)."""
    from .frozen_file import ModelFileError, open_frozen

    if not isinstance(source, (str, os.PathLike)):
        return None
    try:
        frozen = open_frozen(source)
    except (ModelFileError, OSError, ValueError):
        return None
    prec = (getattr(frozen, "meta", None) or {}).get("precision") or {}
    return prec.get("cast") if prec.get("descriptor") == precision else None


def in_precision(model: EnergyModel, precision: str | None, source=None) -> tuple[EnergyModel, dict | None]:
    """(the model in ``precision`` (None: its own), the record for the frozen file's description:
    None when nothing was cast, unless ``source`` is a frozen model that was). ``source``: where
    the model came from (a checkpoint names its data)."""
    trained = model_precision(model)
    if precision is None or trained == precision:
        return model, recorded_cast(source, trained)
    cast = cast_model(model, precision)
    frame = training_frame(source, model.type_map) or synthetic_frame(model)
    check = cast_error(model, cast, frame)
    log.info("freeze: %s", describe(check, trained, precision))
    return cast, {"trained": trained, "check": check}
