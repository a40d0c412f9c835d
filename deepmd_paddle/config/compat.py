"""Older input layouts, converted the way DeePMD-kit 3.2's ``dp train`` converts them.

- v0 (before DeePMD-kit 1.0): one flat mapping (``use_smooth``, ``sel_a``, ``filter_neuron``,
  ``fitting_neuron``, ``systems``, ``stop_batch``, ...), no ``model`` section;
- v1 (1.x): ``training/systems`` (and ``set_prefix``, ``batch_size``, ``sys_probs``,
  ``auto_prob``) instead of ``training/training_data``; a ``decay_rate`` becomes the ``stop_lr``
  it reaches at ``stop_batch``;
- ``training/numb_test`` (no effect since 2.0) is dropped;
- ``training/warmup_*`` (3.1) move to ``learning_rate``;
- optimizer keys in ``training`` (``opt_type``, ``adam_beta1``, ..., 3.1) move to ``optimizer``.

Each conversion logs a warning naming what it did; keys a v0 file holds that the conversion does
not read are named too (DeePMD-kit drops them).
"""
from __future__ import annotations

import copy
import logging
import math

from .errors import ConfigError

log = logging.getLogger("deepmd_paddle")

_V1_DATA_KEYS = ("systems", "set_prefix", "batch_size", "sys_prob", "auto_prob", "sys_weights", "auto_prob_style")
_V31_OPTIMIZER_KEYS = ("opt_type", "kf_blocksize", "kf_start_pref_e", "kf_limit_pref_e", "kf_start_pref_f",
                       "kf_limit_pref_f", "weight_decay", "momentum", "muon_momentum", "adam_beta1", "adam_beta2",
                       "lr_adjust", "lr_adjust_coeff", "muon_2d_only", "min_2d_dim")
_WARMUP_KEYS = ("warmup_steps", "warmup_ratio", "warmup_start_factor")
_STEP_KEYS = ("stop_batch", "numb_steps", "num_steps", "num_step", "numb_step")


def upgrade(raw: dict) -> dict:
    """A copy of ``raw`` in the current (v2, DeePMD-kit 3.2) layout."""
    cfg = copy.deepcopy(raw)
    if "model" not in cfg:
        cfg = _v0_to_v1(cfg)
        _v1_to_v2(cfg)
    elif isinstance(cfg.get("training"), dict) and "systems" in cfg["training"]:
        _v1_to_v2(cfg)
        log.warning("input in DeePMD-kit 1.x layout (training/systems): converted to training/training_data")
    tr = cfg.get("training")
    if isinstance(tr, dict):
        if "numb_test" in tr:
            tr.pop("numb_test")
            log.warning("training/numb_test has had no effect since DeePMD-kit 2.0 and is ignored; "
                        "use training/validation_data/batch_size")
        _move_warmup(cfg, tr)
        _move_optimizer(cfg, tr)
    return cfg


def _v0_to_v1(v0: dict) -> dict:
    """DeePMD-kit 0.x's flat input -> the sectioned layout of 1.x."""
    used = set()

    def take(key, default=None, required=False):
        if key in v0:
            used.add(key)
            return v0[key]
        if required:
            raise ConfigError(f"input in DeePMD-kit 0.x layout (no model section): key {key!r} is required")
        return default

    def copy_keys(dst, keys):
        for k in keys:
            if k in v0:
                dst[k] = take(k)

    seed = take("seed")
    if take("use_smooth", required=True):
        desc = {"type": "se_a", "sel": take("sel_a", required=True), "rcut": take("rcut", required=True)}
        desc["rcut_smth"] = take("rcut_smth", desc["rcut"])
        desc["neuron"] = take("filter_neuron", required=True)
        axis = take("axis_neuron", take("n_axis_neuron"))
        if axis is not None:
            desc["axis_neuron"] = axis
        # DeePMD-kit reads filter_resnet_dt when resnet_dt is present, and sets false otherwise
        desc["resnet_dt"] = take("filter_resnet_dt", required=True) if "resnet_dt" in v0 else False
    else:
        desc = {"type": "loc_frame"}
        copy_keys(desc, ("sel_a", "sel_r", "rcut", "axis_rule"))
    fit = {"resnet_dt": True}
    neuron = take("fitting_neuron", take("n_neuron"))
    if neuron is not None:
        fit["neuron"] = neuron
    if "resnet_dt" in v0:
        fit["resnet_dt"] = take("resnet_dt")
    if "fitting_resnet_dt" in v0:
        fit["resnet_dt"] = take("fitting_resnet_dt")
    if seed is not None:
        desc["seed"] = fit["seed"] = seed
    lr = {"type": "exp"}
    copy_keys(lr, ("decay_steps", "decay_rate", "start_lr"))
    loss = {}
    copy_keys(loss, ("start_pref_e", "limit_pref_e", "start_pref_f", "limit_pref_f", "start_pref_v", "limit_pref_v",
                     "start_pref_ae", "limit_pref_ae"))
    tr = {} if seed is None else {"seed": seed}
    copy_keys(tr, ("systems", "set_prefix", "stop_batch", "batch_size"))
    tr["disp_file"] = take("disp_file", "lcurve.out")
    for key in ("disp_freq", "numb_test", "save_freq", "save_ckpt", "disp_training", "time_training"):
        tr[key] = take(key, required=True)
    if "profiling" in v0:
        tr["profiling"] = take("profiling")
        if tr["profiling"]:
            tr["profiling_file"] = take("profiling_file", required=True)
    dropped = sorted(k for k in v0 if k not in used and not k.startswith("_"))
    log.warning("input in DeePMD-kit 0.x layout (no model section): converted as DeePMD-kit does%s",
                f"; these keys are not read by the conversion: {', '.join(dropped)}" if dropped else "")
    return {"model": {"descriptor": desc, "fitting_net": fit}, "learning_rate": lr, "loss": loss, "training": tr}


def _v1_to_v2(cfg: dict) -> None:
    """training/systems & co. -> training/training_data; a decay_rate -> the stop_lr it reaches."""
    tr = cfg["training"]
    if "training_data" in tr:
        raise ConfigError("training: both training/systems (DeePMD-kit 1.x) and training/training_data are given; "
                          "give training_data only")
    cfg["training"] = {k: v for k, v in tr.items() if k not in _V1_DATA_KEYS}
    cfg["training"]["training_data"] = {k: v for k, v in tr.items() if k in _V1_DATA_KEYS}
    lr = cfg.get("learning_rate")
    if isinstance(lr, dict) and "decay_rate" in lr:
        steps = next((tr[k] for k in _STEP_KEYS if k in tr), None)
        try:
            lr["stop_lr"] = math.exp(math.log(lr["decay_rate"]) * steps / lr["decay_steps"]) * lr["start_lr"]
        except (KeyError, TypeError, ValueError):
            raise ConfigError("learning_rate/decay_rate in a DeePMD-kit 1.x input becomes stop_lr = start_lr * "
                              "decay_rate^(stop_batch / decay_steps): it needs start_lr, decay_steps and "
                              "training/stop_batch as positive numbers") from None
        del lr["decay_rate"]


def _move_warmup(cfg: dict, tr: dict) -> None:
    keys = [k for k in _WARMUP_KEYS if k in tr]
    if not keys:
        return
    lr = cfg.setdefault("learning_rate", {})
    if not isinstance(lr, dict):
        return
    both = [k for k in keys if k in lr]
    if both:
        raise ConfigError(f"{', '.join(both)} given both in training and in learning_rate; give them in "
                          "learning_rate only")
    for k in keys:
        lr[k] = tr.pop(k)
    log.warning("training/%s moved to learning_rate (DeePMD-kit 3.2's place)", ", training/".join(keys))


def _move_optimizer(cfg: dict, tr: dict) -> None:
    keys = [k for k in _V31_OPTIMIZER_KEYS if k in tr]
    if not keys:
        return
    moved = {("type" if k == "opt_type" else k): tr.pop(k) for k in keys}
    opt = cfg.get("optimizer")
    cfg["optimizer"] = {**(opt if isinstance(opt, dict) else {}), **moved}
    log.warning("training/%s moved to the optimizer section (DeePMD-kit 3.2's place)", ", training/".join(keys))
