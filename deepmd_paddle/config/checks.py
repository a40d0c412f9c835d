"""The checks of an input's meaning, beyond the types dargs checks: ``check_meaning`` runs them all
on the normalised input; ``refuse_other_types`` runs before the schema, ``check_output_paths``
when the output folder is known (before step 0).

- numbers are finite (JSON's NaN/Infinity, YAML's .nan/.inf are refused with the key named);
- a boolean is not a number (dargs, like Python, takes ``true`` for an int);
- net widths, ``sel``, ``axis_neuron``, ``rcut`` are positive, ``0 <= rcut_smth < rcut``;
- the loss prefactors are >= 0 and at least one of them is positive;
- ``numb_fparam``, ``numb_aparam`` >= 0, ``default_fparam`` of ``numb_fparam`` values;
- ``start_lr``, ``stop_lr`` (``stop_lr_ratio``), ``decay_steps`` are positive, ``decay_rate`` is in
  (0, 1]; the step counts and frequencies are positive;
- the folders training writes to (checkpoints, learning curve) exist or can be made, writable.
"""
from __future__ import annotations

import math
import os
from typing import get_args

from ..kernels.checks import check_cutoffs

from dargs import Argument

from .errors import ConfigError
from .schema_model import DEEPMD_TYPES

SUPPORTED_TYPES = {"model": "standard", "model/descriptor": "se_e2_a (se_a)", "model/fitting_net": "ener",
                   "loss": "ener", "optimizer": "Adam"}


def refuse_other_types(raw: dict) -> None:
    """A DeePMD-kit model, descriptor, fitting, loss or optimizer type deepmd_paddle does not build
    is refused by name (a name DeePMD-kit does not know either is left to the schema's message)."""
    model = raw.get("model")
    if isinstance(model, dict) and "model_dict" in model:
        raise ConfigError("model/model_dict: multi-task training is not supported by deepmd_paddle")
    for section, supported in SUPPORTED_TYPES.items():
        node = raw
        for part in section.split("/"):
            node = node.get(part) if isinstance(node, dict) else None
        tag = node.get("type") if isinstance(node, dict) else None
        if isinstance(tag, str) and tag in DEEPMD_TYPES[section]:
            raise ConfigError(f"{section}/type: {tag!r} is a DeePMD-kit type that deepmd_paddle does not support; "
                              f"supported: {supported}")


def check_meaning(cfg: dict, schema: Argument) -> None:
    """Every check of the module docstring that needs no file system; raises ConfigError."""
    _check_finite(cfg, "")
    _check_not_bool(schema, cfg, "")
    model, loss, lr, tr = cfg["model"], cfg["loss"], cfg["learning_rate"], cfg["training"]
    desc, fit = model["descriptor"], model["fitting_net"]
    for key, part in (("model/descriptor/neuron", desc), ("model/fitting_net/neuron", fit)):
        if not part["neuron"] or min(part["neuron"]) < 1:
            raise ConfigError(f"{key}: got {part['neuron']}; need at least one width, every width >= 1")
    if not 1 <= desc["axis_neuron"] <= desc["neuron"][-1]:
        raise ConfigError(f"model/descriptor/axis_neuron: got {desc['axis_neuron']}; need 1 <= axis_neuron <= the "
                          f"last embedding width ({desc['neuron'][-1]})")
    if isinstance(desc["sel"], list) and (min(desc["sel"], default=0) < 0 or sum(desc["sel"]) < 1):
        raise ConfigError(f"model/descriptor/sel: got {desc['sel']}; need counts >= 0, at least one > 0")
    try:  # the model's own rule (the descriptor checks the same when it is built)
        check_cutoffs(desc["rcut"], None, desc["rcut_smth"])
    except ValueError as e:
        raise ConfigError(f"model/descriptor: {e}") from None
    _positive(model, "model", ("data_stat_nbatch", "data_stat_protect"))
    _check_fit_inputs(fit)
    prefs = {k: v for k, v in loss.items() if k.startswith(("start_pref_", "limit_pref_"))}
    negative = [f"{k}={v}" for k, v in prefs.items() if v < 0]
    if negative:
        raise ConfigError(f"loss: prefactors must be >= 0, got {', '.join(negative)}")
    if not any(v > 0 for v in prefs.values()):
        raise ConfigError("loss: every prefactor is 0, so nothing would be trained; give a positive start_pref_* or "
                          "limit_pref_* (e.g. start_pref_e 0.02, limit_pref_e 1, start_pref_f 1000, limit_pref_f 1)")
    if loss.get("relative_f") is not None and not loss["relative_f"] > 0:  # (it divides the force errors)
        raise ConfigError(f"loss/relative_f: got {loss['relative_f']}; need a number > 0 (or leave it out)")
    _check_learning_rate(lr)
    if tr.get("numb_steps", 0) < 0:
        raise ConfigError(f"training/numb_steps: got {tr['numb_steps']}; need >= 0")
    _positive(tr, "training", ("disp_freq", "save_freq", "max_ckpt_keep", "tensorboard_freq"))
    _check_records(tr)
    if tr["validation_data"] is not None:
        _positive(tr["validation_data"], "training/validation_data", ("numb_btch",))


def _check_records(tr: dict) -> None:
    """stat_file in HDF5; tensorboard only with a writer installed (train/records.py)."""
    if tr.get("stat_file") is not None and not tr["stat_file"].endswith((".h5", ".hdf5")):
        raise ConfigError(f"training/stat_file: got {tr['stat_file']!r}; deepmd_paddle stores the statistics in an "
                          "HDF5 file: give a name ending in .h5 or .hdf5 (DeePMD-kit's folder form is not supported)")
    if tr["tensorboard"]:
        import importlib.util

        if importlib.util.find_spec("tensorboardX") is None:
            raise ConfigError("training/tensorboard is true but no TensorBoard writer is installed: install "
                              "tensorboardX (pip install tensorboardX) or set training/tensorboard to false")


def _check_fit_inputs(fit: dict) -> None:
    """numb_fparam, numb_aparam >= 0; default_fparam: numb_fparam values."""
    for key in ("numb_fparam", "numb_aparam"):
        if fit[key] < 0:
            raise ConfigError(f"model/fitting_net/{key}: got {fit[key]}; need an integer >= 0")
    if fit["default_fparam"] is not None and len(fit["default_fparam"]) != fit["numb_fparam"]:
        raise ConfigError(f"model/fitting_net/default_fparam: got {fit['default_fparam']}; need numb_fparam = "
                          f"{fit['numb_fparam']} values (or null)")


def _check_learning_rate(lr: dict) -> None:
    if lr["stop_lr"] is not None and lr["stop_lr_ratio"] is not None:
        raise ConfigError("learning_rate: stop_lr and stop_lr_ratio are mutually exclusive; give one")
    _positive(lr, "learning_rate", ("start_lr", "stop_lr", "stop_lr_ratio", "decay_steps"))
    if lr["stop_lr"] is None:  # DeePMD-kit 3.2's default when neither is given
        lr["stop_lr"] = 5e-8 if lr["stop_lr_ratio"] is None else lr["start_lr"] * lr["stop_lr_ratio"]
    if lr["decay_rate"] is not None and not 0 < lr["decay_rate"] <= 1:
        raise ConfigError(f"learning_rate/decay_rate: got {lr['decay_rate']}; need 0 < decay_rate <= 1")


def _positive(section: dict, where: str, keys) -> None:
    for key in keys:
        value = section.get(key)
        if value is not None and not value > 0:
            raise ConfigError(f"{where}/{key}: got {value}; need a positive number")


def _check_finite(value, path: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{path.strip('/') or 'input'}: got {value}; numbers must be finite")
    if isinstance(value, dict):
        for k, v in value.items():
            _check_finite(v, f"{path}/{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_finite(v, f"{path}[{i}]")


def _allows_bool(dtypes, in_list: bool) -> bool:
    for dt in dtypes:
        if in_list:
            if any(a is bool for a in get_args(dt)):
                return True
        elif dt is bool:
            return True
    return False


def _check_not_bool(arg: Argument, value, path: str) -> None:
    """true/false where the schema asks for a number (int, float, or a list of them)."""
    if isinstance(value, dict) and (arg.sub_fields or arg.sub_variants):
        fields = arg.flatten_sub(value, path.strip("/").split("/"))
        for key, sub in value.items():
            if key in fields and key != "type":
                _check_not_bool(fields[key], sub, f"{path}/{key}")
        return
    where = path.strip("/")
    if isinstance(value, bool) and not _allows_bool(arg.dtype, in_list=False):
        raise ConfigError(f"{where}: got {str(value).lower()}; a boolean is not allowed here "
                          f"(allowed: {_type_names(arg)})")
    if isinstance(value, list) and any(isinstance(v, bool) for v in value) and not _allows_bool(arg.dtype, True):
        raise ConfigError(f"{where}: got {value}; booleans are not allowed in this list "
                          f"(allowed: {_type_names(arg)})")


def _type_names(arg: Argument) -> str:
    return " | ".join(sorted(getattr(dt, "__name__", None) or str(dt).replace("typing.", "") for dt in arg.dtype))


def check_output_paths(training: dict, outdir: str) -> None:
    """Make the folders of the checkpoints and of the learning curve now (ConfigError naming the
    key when one cannot be made or written), not at the first save."""
    keys = ["save_ckpt"] + (["disp_file"] if training.get("disp_training", True) else [])
    for key in keys:
        target = os.path.join(outdir, training[key])
        folder = os.path.dirname(os.path.abspath(target))
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"training/{key}: cannot make the folder {folder} for {training[key]!r} "
                              f"({e.strerror or e})") from None
        if not os.access(folder, os.W_OK | os.X_OK):
            raise ConfigError(f"training/{key}: the folder {folder} for {training[key]!r} is not writable")
        if os.path.isdir(target):
            raise ConfigError(f"training/{key}: {target} is a folder; give a file name (a path prefix for "
                              "save_ckpt)")
