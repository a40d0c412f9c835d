"""What deepmd_paddle does not build yet, in one place.

``UNSUPPORTED``: key path -> DeePMD-kit's default. Such a key is accepted at that default (or at a
value ``EQUIVALENT`` to it) and then removed from the normalised input, so the rest of the package
never sees it; set to anything else it is refused. When a feature is built, delete its row here:
the key then reaches the code that reads it.

``VALUES``: keys deepmd_paddle reads, where only some of DeePMD-kit's values are built.

``check`` collects every refusal of both tables and raises ONE ConfigError listing them all.
"""
from __future__ import annotations

import re

from .errors import ConfigError

ABSENT = object()  # DeePMD-kit's "optional, no default": the key must be left out (or null)

_EXP = "learning_rate"
_TR = "training"
_TD = "training/training_data"
_VD = "training/validation_data"
_DESC = "model/descriptor"
_FIT = "model/fitting_net"
_TE_MODEL = "model/type_embedding"  # DeePMD-kit's place of the learned type embedding
_TE_DESC = "model/descriptor/type_embedding"  # deepmd_paddle's place of it

UNSUPPORTED = {
    # ---- model
    "model/data_bias_nsample": 10,
    "model/pair_exclude_types": [],
    "model/atom_exclude_types": [],
    "model/preset_out_bias": None,
    "model/compress": ABSENT,
    "model/spin": ABSENT,
    "model/finetune_head": ABSENT,
    "model/model_branch_alias": [],
    "model/info": {},
    "model/bridging_method": "None",
    "model/bridging_r_inner": 0.5,
    "model/bridging_r_outer": 0.8,
    # ---- descriptor (se_e2_a family)
    f"{_DESC}/env_protection": 0.0,
    # ---- type embedding (DeePMD-kit's section, at model level or in the descriptor)
    f"{_TE_MODEL}/use_econf_tebd": False,
    f"{_TE_DESC}/use_econf_tebd": False,
    # ---- fitting net (ener)
    f"{_FIT}/dim_case_embd": 0,
    f"{_FIT}/layer_name": ABSENT,
    # ---- loss (ener)
    "loss/start_pref_h": 0.0, "loss/limit_pref_h": 0.0,
    "loss/use_default_pf": False,
    "loss/start_pref_gf": 0.0, "loss/limit_pref_gf": 0.0,
    "loss/numb_generalized_coord": 0,
    "loss/use_huber": False,
    "loss/loss_func": "mse",
    "loss/f_use_norm": False,
    "loss/huber_delta": 0.01,
    # ---- learning rate
    f"{_EXP}/warmup_steps": 0,
    f"{_EXP}/warmup_ratio": None,
    f"{_EXP}/warmup_start_factor": 0.0,
    # ---- optimizer (Adam with Paddle's defaults, which are DeePMD-kit's)
    "optimizer/adam_beta1": 0.9,
    "optimizer/adam_beta2": 0.999,
    "optimizer/weight_decay": 0.0,
    # ---- training
    f"{_TD}/rglob_patterns": None,
    f"{_TD}/min_pair_dist": 0.0,
    f"{_VD}/rglob_patterns": None,
    f"{_TR}/stat_file_mode": "update",
    f"{_TR}/save_dir": None,
    f"{_TR}/ckpt_keep_ratio": None,
    f"{_TR}/enable_ema": False,
    f"{_TR}/ema_decay": 0.999,
    f"{_TR}/ema_ckpt_keep": None,
    f"{_TR}/change_bias_after_training": False,
    f"{_TR}/disp_avg": False,
    f"{_TR}/enable_profiler": False,
    f"{_TR}/gradient_max_norm": ABSENT,
    f"{_TR}/acc_freq": 1,
    f"{_TR}/zero_stage": 0,
    f"{_TR}/neighbor_graph_method": "auto",
    f"{_TR}/enable_compile": False,
    f"{_TR}/enable_tf32": False,
    # ---- full validation
    "validating/full_validation": False,
    "validating/ema_full_validation": False,
    "validating/validation_freq": 5000,
    "validating/save_best": True,
    "validating/save_best_dir": None,
    "validating/max_best_ckpt": 1,
    "validating/validation_metric": "E:MAE",
    "validating/full_val_file": "val.log",
    "validating/full_val_start": 0.5,
    "validating/compiled_infer": False,
    "validating/tf32_infer": False,
    "validating/amp_infer": False,
    # ---- NVNMD
    "nvnmd": ABSENT,
}

# checked here but left in the normalised input: the layer that reads the section knows the key
KEPT = {f"{_TE_MODEL}/use_econf_tebd", f"{_TE_DESC}/use_econf_tebd"}

# values that mean the same as the default
EQUIVALENT = {
    f"{_TR}/gradient_max_norm": lambda v: v == 0,
    "nvnmd": lambda v: isinstance(v, dict) and not v.get("enable", False),
}

_BUILT_PRECISIONS = ("default", "float64", "float32")
_BUILT_ACTIVATIONS = ("tanh", "relu", "relu6", "softplus", "sigmoid", "gelu", "gelu_tf", "silu", "linear", "none")


def _batch_size_built(v) -> bool:
    return not isinstance(v, str) or re.fullmatch(r"auto(:[1-9]\d*)?|(max|filter):[1-9]\d*", v) is not None


def _batch_size_known(v) -> bool:
    return not isinstance(v, str) or re.fullmatch(r"(auto|(auto|max|filter|mixed|mix):[1-9]\d*)", v) is not None


# path -> (DeePMD-kit's values (None: any), the values deepmd_paddle builds, their description)
VALUES = {
    f"{_DESC}/type": (lambda v: True, lambda v: v in ("se_e2_a", "se_a_ebd_v2"), "se_e2_a (se_a), se_a_ebd_v2 "
                      "(se_a_tpe_v2)"),
    f"{_EXP}/type": (lambda v: True, lambda v: v == "exp", "exp"),
    f"{_EXP}/scale_by_worker": (lambda v: v in ("linear", "sqrt", "none"), lambda v: True, "linear, sqrt, none"),
    **{f"{p}/precision": (lambda v: v in ("default", "float16", "bfloat16", "float32", "float64"),
                          lambda v: v in _BUILT_PRECISIONS, ", ".join(_BUILT_PRECISIONS))
       for p in (_DESC, _FIT, _TE_MODEL, _TE_DESC)},
    **{f"{p}/activation_function": (
        lambda v: v.lower() in ("relu", "relu6", "softplus", "sigmoid", "tanh", "gelu", "gelu_tf", "silu",
                                "silut", "none", "linear"),
        lambda v: v.lower() in _BUILT_ACTIVATIONS, ", ".join(_BUILT_ACTIVATIONS))
       for p in (_DESC, _FIT, _TE_MODEL, _TE_DESC)},
    # (model/mixed_precision.py; DeePMD-kit 3.2's TensorFlow backend takes output float32 with float16/bfloat16 only)
    f"{_TR}/mixed_precision/output_prec": (lambda v: v in ("float32", "float64"), lambda v: True, "float32, float64"),
    f"{_TR}/mixed_precision/compute_prec": (lambda v: v in ("float16", "bfloat16", "float32"), lambda v: True,
                                            "float16, bfloat16, float32"),
    **{f"{p}/batch_size": (_batch_size_known, _batch_size_built,
                           "an int, a list of ints, 'auto', 'auto:N', 'max:N', 'filter:N'") for p in (_TD, _VD)},
}


def get(cfg: dict, path: str):
    """The value at ``path`` (ABSENT when a part is missing or not a mapping)."""
    node = cfg
    for part in path.split("/"):
        if not isinstance(node, dict) or part not in node:
            return ABSENT
        node = node[part]
    return node


def _is_default(path: str, value) -> bool:
    default = UNSUPPORTED[path]
    if value is ABSENT or (default is ABSENT and value is None):
        return True
    if path in EQUIVALENT and EQUIVALENT[path](value):
        return True
    return default is not ABSENT and type(value) is type(default) and value == default or (
        isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool) and value == default)


def check(cfg: dict) -> None:
    """Raise one ConfigError naming every key set to something deepmd_paddle does not build."""
    refused, invalid = [], []
    for path in UNSUPPORTED:
        value = get(cfg, path)
        if not _is_default(path, value):
            default = UNSUPPORTED[path]
            was = "left out" if default is ABSENT else f"{default!r}"
            refused.append(f"  {path} = {_show(value)} (DeePMD-kit's default: {was})")
    for path, (known, built, allowed) in VALUES.items():
        value = get(cfg, path)
        if value is ABSENT or not isinstance(value, str) and not path.endswith("batch_size"):
            continue
        if not known(value):
            invalid.append(f"{path}: got {value!r}; allowed: {allowed}")
        elif not built(value):
            refused.append(f"  {path} = {_show(value)} (Allowed values: {allowed})")
    if invalid:
        raise ConfigError("; ".join(invalid))
    if refused:
        raise ConfigError(f"{len(refused)} setting(s) of this input are not supported by deepmd_paddle (a DeePMD-kit "
                          "key it does not build yet is accepted at its default value only):\n" + "\n".join(refused))


def strip(cfg: dict) -> None:
    """Remove the keys of ``UNSUPPORTED`` (all at their defaults by now) and sections left empty."""
    for path in UNSUPPORTED.keys() - KEPT:
        *parents, key = path.split("/")
        node = get(cfg, "/".join(parents)) if parents else cfg
        if isinstance(node, dict):
            node.pop(key, None)
    for section, empty in (("optimizer", {"type": "Adam"}), ("validating", {})):
        if cfg.get(section) in ({}, empty):
            del cfg[section]


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
