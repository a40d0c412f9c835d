"""Start a training run from another model: DeePMD-kit's ``dp train --init-model``,
``--init-frz-model`` and ``--finetune``, and the energy-bias change (``dp change-bias``).

Any model file ``deepmd_paddle.io.load.load_model`` reads is a source: one of our checkpoints, a
DeePMD-kit ``.dp``/``.yaml`` or frozen TensorFlow ``.pb``, and a frozen model where the loader
reads those. The run trains the source's network (its model section replaces the input's, as
DeePMD-kit's TensorFlow backend does for ``--init-frz-model`` and ``--finetune``; a differing
input model section is reported) from its weights and statistics, at step 0 with a fresh
optimiser and learning-rate schedule.

- ``init-model`` and ``init-frz-model``: weights and statistics as they are; the input's
  ``type_map`` must equal the source's.
- ``finetune``: the input's ``type_map`` may be any subset of the source's (the run keeps the
  source's full map, as DeePMD-kit's TensorFlow backend does); then the per-type energy constant
  is changed by DeePMD-kit's "change-by-statistic": the model predicts the energies of the first
  ``data_bias_nsample`` (10) frames of each training system, and the least-squares per-type shift
  that best explains the label-minus-prediction differences is added (``change_energy_bias``).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)
MODES = ("init-model", "init-frz-model", "finetune")
FINETUNE_NSAMPLE = 10  # DeePMD-kit's data_bias_nsample


@dataclass(frozen=True)
class InitFrom:
    """Where a run starts: ``path`` of the source model, ``mode`` one of MODES."""
    path: str
    mode: str = "init-model"

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"init mode {self.mode!r} is not known; allowed: {list(MODES)}")


def as_init(init) -> InitFrom | None:
    """An ``InitFrom`` from a path (``init-model``), an ``InitFrom`` or None."""
    return init if init is None or isinstance(init, InitFrom) else InitFrom(str(init))


def load_source(init: InitFrom):
    """The source ``EnergyModel``; an unreadable file is named with the flag that gave it."""
    from deepmd_paddle.io.frozen import frozen_prefix
    from deepmd_paddle.io.load import load_model

    try:
        return load_model(init.path)
    except (ValueError, NotImplementedError, OSError) as e:
        hint = ""
        if frozen_prefix(init.path):
            hint = ("; this frozen model holds programs only: start from the checkpoint or .dp file it was frozen "
                    "from (`dpp convert CKPT model.dp`)")
        raise type(e)(f"--{init.mode} {init.path}: {e}{hint}") from None


def prepare_config(config: dict, init: InitFrom | None) -> dict:
    """The input config with the source model's section (checked against the input's type_map)."""
    if init is None:
        return config
    source = load_source(init).get_config()
    want, have = list(config["model"]["type_map"]), list(source["type_map"])
    if init.mode == "finetune":
        missing = [t for t in want if t not in have]
        if missing:
            raise ValueError(f"--finetune {init.path}: the input's type_map has {missing}, which the pretrained "
                             f"model's type_map {have} lacks")
    elif want != have:
        raise ValueError(f"--{init.mode} {init.path}: its type_map {have} differs from the input's {want}")
    changed = sorted(k for k in ("descriptor", "fitting_net") if _differs(config["model"].get(k), source[k]))
    if changed:
        log.warning("--%s: the model is %s's; the input's %s section(s) are not used", init.mode, init.path,
                    " and ".join(changed))
    # (the source's mixed_precision record stays behind: the input's training/mixed_precision decides)
    source = {k: v for k, v in source.items() if k != "mixed_precision"}
    return {**config, "model": {**config["model"], **source}}


def _differs(given, source) -> bool:
    if not isinstance(given, dict):
        return False
    keys = ("type", "rcut", "rcut_smth", "neuron", "axis_neuron", "type_one_side", "resnet_dt")
    return any(k in given and k in source and given[k] != source[k] for k in keys)


def source_tensors(init: InitFrom) -> tuple[dict, dict]:
    """(tensors, meta) of the source in the layout of a checkpoint's (``io.checkpoint.load``):
    ``model.<name>`` arrays and ``{"config": {"model": ...}, "base": path}``."""
    model = load_source(init)
    tensors = {f"model.{k}": np.asarray(v.numpy()) for k, v in model.state_dict().items()}
    return tensors, {"config": {"model": model.get_config()}, "base": init.path, "init_mode": init.mode,
                     "min_nbor_dist": model.min_nbor_dist}


def bias_frames(system, nsample: int) -> np.ndarray:
    """The frames of ``system`` a bias change uses: the first ``nsample`` with an energy label (0: all)."""
    idx = np.flatnonzero(system.found["energy"])
    return idx if nsample <= 0 else idx[:nsample]


def change_energy_bias(model, systems, nsample: int = FINETUNE_NSAMPLE, mode: str = "change") -> np.ndarray:
    """DeePMD-kit's energy-bias change on ``systems`` (frames: ``bias_frames``), applied to the
    model's per-type output constant (``out_bias``); returns the per-type shift.

    ``change``: least squares of (label - prediction) on the type counts, added to the constant.
    ``set``: least squares of the labels themselves becomes the whole constant (fitting bias
    included)."""
    from deepmd_paddle.data.stats import energy_bias

    ntypes = model.ntypes
    counts, labels, preds = [], [], []
    for s in systems:
        idx = bias_frames(s, nsample)
        if len(idx) == 0:
            continue
        counts.append(np.broadcast_to(s.type_counts(ntypes), (len(idx), ntypes)))
        labels.append(s.labels["energy"][idx].reshape(-1))
        if mode == "change":
            preds.append(predict_energy(model, s, idx))
    if not labels:
        raise ValueError("the energy bias needs energy labels (energy.npy), and none of the systems has them")
    counts, labels = np.concatenate(counts).astype(np.float64), np.concatenate(labels)
    total = model.out_bias.numpy() + model.fitting.bias_atom_e.numpy()
    present = counts.sum(axis=0) > 0  # a type absent from the data keeps its constant
    if mode == "change":
        target = labels - np.concatenate(preds)
        shift = np.zeros(ntypes)
        shift[present] = energy_bias(target, counts[:, present])
        rmse = np.sqrt(np.mean(((target - counts @ shift) / counts.sum(axis=1)) ** 2))
        log.info("RMSE of atomic energy after linear regression is: %g eV/atom.", rmse)
    elif mode == "set":
        new = total.copy()
        new[present] = energy_bias(labels, counts[:, present])
        shift = new - total
    else:
        raise ValueError(f"bias mode {mode!r} is not known; allowed: change, set")
    set_energy_constant(model, total + shift)
    log.info("Change energy bias of %s from %s to %s.", list(model.type_map), total.tolist(), (total + shift).tolist())
    return shift


def predict_energy(model, system, idx, chunk: int = 8) -> np.ndarray:
    """The model's energies of frames ``idx`` of ``system`` [len(idx)]."""
    import paddle

    out = []
    model.eval()
    for start in range(0, len(idx), chunk):
        part = idx[start:start + chunk]
        coord = paddle.to_tensor(system.coord[part])  # nf x nloc x 3
        atype = paddle.to_tensor(np.broadcast_to(system.atype, (len(part), system.natoms)).astype(np.int32))
        box = None if system.box is None else paddle.to_tensor(system.box[part])  # nf x 9
        out.append(model(coord, atype, box)["energy"].numpy().reshape(-1))
    return np.concatenate(out)


def set_energy_constant(model, values) -> None:
    """Make the per-type energy constant (fitting bias + output bias) equal ``values``."""
    import paddle

    values = np.asarray(values, np.float64).reshape(-1)
    if values.shape != (model.ntypes,) or not np.isfinite(values).all():
        raise ValueError(f"the energy bias takes {model.ntypes} finite numbers, one per type of "
                         f"{list(model.type_map)}; "
                         f"got {values.tolist()}")
    model.out_bias.set_value(paddle.to_tensor(values - model.fitting.bias_atom_e.numpy(), dtype=model.out_bias.dtype))


def after_load(model, init, train_systems) -> None:
    """What follows loading the source's weights: the energy-bias change of ``--finetune``."""
    init = as_init(init)
    if init is not None and init.mode == "finetune":
        change_energy_bias(model, train_systems, FINETUNE_NSAMPLE, "change")
