"""The input file: one schema of every key and default, in DeePMD-kit's names.

A DeePMD-kit ``input.json`` for ``se_e2_a`` + ``ener`` fitting + ``ener`` loss + ``exp``
learning rate is accepted as it is. ``normalize`` fills the defaults (dargs), rejects unknown or
misspelled keys and wrong types with a message naming the key, checks the values the schema
cannot (allowed choices, ``sel``, ``batch_size``), and expands ``systems`` into absolute
paths (relative paths are taken from the folder of the input file).

Sections and what reads them::

    model          -> deepmd_paddle.model.EnergyModel.from_config (after ``sel: auto`` is resolved)
    loss           -> deepmd_paddle.train.loss.EnerLoss
    learning_rate  -> deepmd_paddle.train.lr.LearningRateExp
    training       -> deepmd_paddle.train.trainer.Trainer, deepmd_paddle.data.batch.DataSet
"""
from __future__ import annotations

import json
import os

from dargs import Argument, Variant
from dargs.dargs import ArgumentError

PRECISIONS = ("default", "float64", "float32")  # "default" is DeePMD-kit's float64


class ConfigError(ValueError):
    """A bad input file; the message names the key at fault and what is allowed."""


# --------------------------------------------------------------------------- schema
def _choice(name: str, allowed, **kw) -> Argument:
    return Argument(name, str, extra_check=lambda v: v in allowed,
                    extra_check_errmsg=f"Allowed values: {', '.join(allowed)}.", **kw)


def type_embedding_arg(optional_default) -> Argument:
    """``type_embedding``: element properties (true or a list of names) or DeePMD-kit's learned
    section (a dict); see deepmd_paddle.model.descriptor_te."""
    return Argument("type_embedding", [bool, list[str], dict, None], [
        Argument("neuron", list[int], optional=True, default=[8], doc="Widths of the type embedding net."),
        Argument("activation_function", str, optional=True, default="tanh"),
        Argument("resnet_dt", bool, optional=True, default=False),
        _choice("precision", PRECISIONS, optional=True, default="default"),
        Argument("trainable", bool, optional=True, default=True),
        Argument("seed", [int, None], optional=True, default=None),
        Argument("use_econf_tebd", bool, optional=True, default=False, doc="Not supported (must be false)."),
    ], optional=True, default=optional_default,
        doc="One embedding net for all types, fed with [R~[0], type vector of the neighbour (and of the centre "
            "when type_one_side is false)]. true: element properties (atomic_number, mass, covalent_radius, "
            "electronegativity, valence_electrons); a list: those properties; a dict: a learned type vector "
            "(DeePMD-kit's type_embedding section: neuron, activation_function, ...).")


def descriptor_args() -> Argument:
    se_e2_a = Argument("se_e2_a", dict, [
        Argument("sel", [list[int], str], optional=True, default="auto",
                 doc="Slots per neighbour type, or 'auto' / 'auto:factor' (max count x factor "
                     "(1.1 by default), rounded up to a multiple of 4)."),
        Argument("rcut", [float, int], optional=True, default=6.0, doc="Cut-off radius, Angstrom."),
        Argument("rcut_smth", [float, int], optional=True, default=0.5,
                 doc="Where the switching function starts, Angstrom."),
        Argument("neuron", list[int], optional=True, default=[10, 20, 40], doc="Embedding net widths."),
        Argument("axis_neuron", int, optional=True, default=4, alias=["n_axis_neuron"],
                 doc="Columns of G kept in the descriptor's second factor."),
        Argument("activation_function", str, optional=True, default="tanh"),
        Argument("resnet_dt", bool, optional=True, default=False),
        Argument("type_one_side", bool, optional=True, default=False,
                 doc="One embedding net per neighbour type (true) or per (centre, neighbour) pair."),
        _choice("precision", PRECISIONS, optional=True, default="default"),
        Argument("trainable", bool, optional=True, default=True),
        Argument("seed", [int, None], optional=True, default=None),
        Argument("exclude_types", list[list[int]], optional=True, default=[]),
        Argument("env_protection", [float, int], optional=True, default=0.0),
        Argument("set_davg_zero", bool, optional=True, default=False),
        type_embedding_arg(False),
    ], alias=["se_a"])
    return Argument("descriptor", dict, [], [Variant("type", [se_e2_a])], doc="The descriptor.")


def fitting_args() -> Argument:
    ener = Argument("ener", dict, [
        Argument("neuron", list[int], optional=True, default=[120, 120, 120], alias=["n_neuron"]),
        Argument("activation_function", str, optional=True, default="tanh"),
        _choice("precision", PRECISIONS, optional=True, default="default"),
        Argument("resnet_dt", bool, optional=True, default=True),
        Argument("trainable", bool, optional=True, default=True),
        Argument("rcond", [float, None], optional=True, default=None,
                 doc="rcond of the least-squares solve for the per-type energy bias."),
        Argument("seed", [int, None], optional=True, default=None),
    ])
    return Argument("fitting_net", dict, [], [Variant("type", [ener], optional=True, default_tag="ener")])


def model_args() -> Argument:
    return Argument("model", dict, [
        Argument("type_map", list[str], doc="Element names; type i of the model is type_map[i]."),
        Argument("data_stat_nbatch", int, optional=True, default=10,
                 doc="Batches per system used for the descriptor statistics and energy bias."),
        Argument("data_stat_protect", [float, int], optional=True, default=1e-2,
                 doc="Lower bound of the descriptor standard deviations."),
        descriptor_args(),
        fitting_args(),
        type_embedding_arg(None),  # DeePMD-kit's model-level section; moved into the descriptor
    ])


def loss_args() -> Argument:
    pref = lambda name, default: Argument(name, [float, int], optional=True, default=default)  # noqa: E731
    ener = Argument("ener", dict, [
        pref("start_pref_e", 0.02), pref("limit_pref_e", 1.0),
        pref("start_pref_f", 1000), pref("limit_pref_f", 1.0),
        pref("start_pref_v", 0.0), pref("limit_pref_v", 0.0),
        Argument("intensive_ener_virial", bool, optional=True, default=False,
                 doc="Normalise energy and virial terms by 1/N^2 instead of DeePMD-kit's legacy 1/N."),
    ])
    return Argument("loss", dict, [], [Variant("type", [ener], optional=True, default_tag="ener")], optional=True)


def learning_rate_args() -> Argument:
    exp = Argument("exp", dict, [
        Argument("decay_steps", int, optional=True, default=5000),
        Argument("decay_rate", [float, None], optional=True, default=None,
                 doc="Used as given instead of (stop_lr/start_lr)^(decay_steps/numb_steps)."),
        Argument("smooth", bool, optional=True, default=False,
                 doc="Decay every step (lr0 r^(t/s)) instead of in stairs (lr0 r^floor(t/s))."),
    ])
    return Argument("learning_rate", dict, [
        Argument("start_lr", [float, int], optional=True, default=1e-3),
        Argument("stop_lr", [float, int, None], optional=True, default=None,
                 doc="Learning rate at numb_steps (default 1e-8 when stop_lr_ratio is not given)."),
        Argument("stop_lr_ratio", [float, None], optional=True, default=None),
        _choice("scale_by_worker", ("linear", "sqrt", "none"), optional=True, default="linear",
                doc="Data-parallel training: the optimizer's rate is the schedule's times the number of "
                    "workers n (linear), sqrt(n), or 1 (none); the loss prefactors follow the unscaled rate."),
    ], [Variant("type", [exp], optional=True, default_tag="exp")], optional=True)


def data_args(name: str, validation: bool) -> Argument:
    fields = [
        Argument("systems", [str, list[str]],
                 doc="Systems: a folder (searched for systems below it), a glob, or a list of these."),
        Argument("batch_size", [int, list[int], str], optional=True, default=1 if validation else "auto",
                 doc="Frames per batch: int, one int per system, 'auto' (= 'auto:32') or 'auto:N' "
                     "(smallest batch with batch x natoms >= N)."),
        Argument("auto_prob", str, optional=True, default="prob_sys_size", alias=["auto_prob_style"]),
        Argument("sys_probs", [list[float], None], optional=True, default=None),
        Argument("fmt", [str, None], optional=True, default=None,
                 doc="A dpdata format (e.g. 'vasp/outcar', 'deepmd/hdf5') for systems that are not "
                     "DeePMD npy folders."),
    ]
    if validation:
        fields.append(Argument("numb_btch", int, optional=True, default=1, alias=["numb_batch"],
                               doc="Validation batches per display step."))
    return Argument(name, dict, fields, optional=validation, default=None)


def training_args() -> Argument:
    return Argument("training", dict, [
        data_args("training_data", validation=False),
        data_args("validation_data", validation=True),
        Argument("numb_steps", int, alias=["stop_batch", "num_steps"]),
        Argument("seed", [int, None], optional=True, default=None),
        Argument("disp_file", str, optional=True, default="lcurve.out"),
        Argument("disp_freq", int, optional=True, default=1000),
        Argument("save_freq", int, optional=True, default=1000),
        Argument("save_ckpt", str, optional=True, default="model.ckpt"),
        Argument("max_ckpt_keep", int, optional=True, default=5),
        Argument("disp_training", bool, optional=True, default=True),
    ])


def input_schema() -> Argument:
    return Argument("input", dict, [model_args(), loss_args(), learning_rate_args(), training_args()])


# --------------------------------------------------------------------------- normalize
def load(path: str) -> dict:
    """Read a YAML or JSON input file and ``normalize`` it (paths relative to its folder)."""
    if not os.path.isfile(path):
        raise ConfigError(f"input file {path!r} does not exist")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if path.endswith((".yaml", ".yml")):
        import yaml

        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML ({e})") from None
    else:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the input must be a mapping of sections, got {type(raw).__name__}")
    return normalize(raw, base_dir=os.path.dirname(os.path.abspath(path)))


def normalize(config: dict, base_dir: str | None = None) -> dict:
    """Defaults filled, keys and types checked, values checked, systems expanded to absolute paths."""
    schema = input_schema()
    config = {"loss": {}, "learning_rate": {}, **config}  # optional sections: their keys' defaults apply
    try:
        out = schema.normalize_value(config, trim_pattern="_*")
        schema.check_value(out, strict=True)
    except ArgumentError as e:
        raise ConfigError(_explain(e, schema)) from None
    _check_values(out)
    base_dir = os.getcwd() if base_dir is None else base_dir
    from deepmd_paddle.data.batch import check_batch_size, system_probs
    from deepmd_paddle.data.system import DataError, expand_systems

    for name in ("training_data", "validation_data"):
        data = out["training"][name]
        if data is not None:
            data["systems"] = expand_systems(data["systems"], base_dir, data["fmt"], f"training/{name}/systems")
            nsys = len(data["systems"])
            try:  # the sampling rules live in data.batch; check them here, before any data is read
                check_batch_size(data["batch_size"], nsys)
                system_probs(data["auto_prob"], data["sys_probs"], [1] * nsys)
            except DataError as e:
                raise ConfigError(f"training/{name}/{e}") from None
    return out


def _explain(e: ArgumentError, schema: Argument) -> str:
    """dargs' message, plus the allowed choices when a variant tag (``type``) is wrong."""
    msg = str(e)
    if "invalid choice" in msg:
        arg = schema
        for key in filter(None, e.path.split("/")):
            arg = arg.sub_fields.get(key, arg)
        tags = [t for v in arg.sub_variants.values() for t in [*v.choice_dict, *v.choice_alias]]
        msg += f" Allowed values: {', '.join(tags)}."
    return msg


def _check_values(cfg: dict) -> None:
    model = cfg["model"]
    ntypes = len(model["type_map"])
    if ntypes == 0 or len(set(model["type_map"])) != ntypes:
        raise ConfigError(f"model/type_map must list distinct element names, got {model['type_map']}")
    desc = model["descriptor"]
    for part in (desc, model["fitting_net"]):
        if part["precision"] == "default":
            part["precision"] = "float64"
    _check_type_embedding(model)
    sel = desc["sel"]
    if isinstance(sel, str):
        from deepmd_paddle.data.stats import auto_sel_factor

        try:
            auto_sel_factor(sel)
        except ValueError:
            raise ConfigError(f"model/descriptor/sel: got {sel!r}; allowed: a list of {ntypes} ints, "
                              "'auto' or 'auto:<factor>'") from None
    elif len(sel) != ntypes:
        raise ConfigError(f"model/descriptor/sel has {len(sel)} entries but model/type_map has {ntypes} types")
    if not 0 <= desc["rcut_smth"] < desc["rcut"]:
        raise ConfigError(f"model/descriptor: need 0 <= rcut_smth < rcut, got rcut_smth={desc['rcut_smth']}, "
                          f"rcut={desc['rcut']}")
    lr = cfg["learning_rate"]
    if lr["stop_lr"] is not None and lr["stop_lr_ratio"] is not None:
        raise ConfigError("learning_rate: stop_lr and stop_lr_ratio are mutually exclusive; give one")
    if lr["stop_lr"] is None:
        lr["stop_lr"] = 1e-8 if lr["stop_lr_ratio"] is None else lr["start_lr"] * lr["stop_lr_ratio"]
    if lr["start_lr"] <= 0 or lr["decay_steps"] <= 0:
        raise ConfigError("learning_rate: start_lr and decay_steps must be positive")
    tr = cfg["training"]
    for key in ("numb_steps", "disp_freq", "save_freq", "max_ckpt_keep"):
        if tr[key] < (0 if key == "numb_steps" else 1):
            raise ConfigError(f"training/{key} must be positive, got {tr[key]}")


def _check_type_embedding(model: dict) -> None:
    """Move DeePMD-kit's model-level ``type_embedding`` into the descriptor; check the properties
    against the element table now, before any data is read."""
    top = model.pop("type_embedding", None)
    desc = model["descriptor"]
    if top is not None and top is not False:
        if desc["type_embedding"] not in (None, False):
            raise ConfigError("type_embedding is given both in model and in model/descriptor; give it once")
        desc["type_embedding"] = top
    spec = desc["type_embedding"]
    if spec is None or spec is False:
        return
    from deepmd_paddle.model.elements import PropertyError, property_matrix, PROPERTIES

    key = "model/descriptor/type_embedding"
    if isinstance(spec, dict):
        if spec["use_econf_tebd"]:
            raise ConfigError(f"{key}/use_econf_tebd: not supported; for physical inputs give "
                              f"type_embedding: true or a list of {', '.join(PROPERTIES)}")
        if not spec["neuron"] or min(spec["neuron"]) < 1:
            raise ConfigError(f"{key}/neuron: need at least one positive width, got {spec['neuron']}")
        if spec["precision"] == "default":
            spec["precision"] = desc["precision"]
        return
    try:
        property_matrix(model["type_map"], PROPERTIES if spec is True else spec)
    except PropertyError as e:
        raise ConfigError(f"{key}: {e}") from None
