"""The input file: one schema of every key and default, in DeePMD-kit 3.2's names.

A DeePMD-kit ``input.json`` for an energy model with a se_e2_a-family descriptor is read as it is
(older layouts are converted as DeePMD-kit converts them: compat.py). ``normalize``:

1. refuses DeePMD-kit model/descriptor/fitting/loss/optimizer types that are not built here, by name;
2. fills the defaults (dargs), rejects unknown or misspelled keys and wrong types, naming the key;
3. refuses, in one message, every key set to something deepmd_paddle does not build yet
   (unsupported.py: the table), then drops those keys, so the sections below keep their shape;
4. checks the meaning of the values (checks.py: finite, positive, no booleans for numbers, ...);
5. expands ``systems`` into absolute paths (relative ones from the folder of the input file) and
   fills ``type_map`` from the data when it is left out (type_map.py).

Sections and what reads them::

    model          -> deepmd_paddle.model.EnergyModel.from_config (after ``sel: auto`` is resolved)
    loss           -> deepmd_paddle.train.loss.EnerLoss
    learning_rate  -> deepmd_paddle.train.lr.LearningRateExp
    training       -> deepmd_paddle.train.trainer.Trainer, deepmd_paddle.data.batch.DataSet
"""
from __future__ import annotations

import json
import logging
import os

from dargs import Argument
from dargs.dargs import ArgumentError

from . import checks, compat, unsupported
from .checks import check_output_paths
from .errors import ConfigError
from .schema_model import model_args, type_embedding_arg
from .schema_train import (learning_rate_args, loss_args, nvnmd_args, optimizer_args, training_args,
                           validating_args)

__all__ = ["ConfigError", "load", "normalize", "normalize_model", "input_schema", "model_args",
           "type_embedding_arg", "check_output_paths"]

log = logging.getLogger("deepmd_paddle")


def input_schema() -> Argument:
    """The whole input, as dargs checks and documents it."""
    return Argument("input", dict, [model_args(), learning_rate_args(), optimizer_args(), loss_args(),
                                    training_args(), validating_args(), nvnmd_args()])


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
    try:
        return normalize(raw, base_dir=os.path.dirname(os.path.abspath(path)))
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def normalize(config: dict, base_dir: str | None = None) -> dict:
    """Defaults filled, keys, types and meaning checked, systems expanded to absolute paths."""
    if not isinstance(config, dict):
        raise ConfigError(f"the input must be a mapping of sections, got {type(config).__name__}")
    schema = input_schema()
    raw = compat.upgrade(config)
    checks.refuse_other_types(raw)
    raw = {"loss": {}, "learning_rate": {}, **raw}  # optional sections: their keys' defaults apply
    out = _apply_schema(schema, raw)
    _drop_set_prefix(out["training"])
    unsupported.check(out)
    unsupported.strip(out)
    tr = out["training"]
    _check_length(tr)
    model = out["model"]
    _fill_precisions(model)
    _check_type_embedding(model)
    checks.check_meaning(out, schema)
    _check_sel_spec(model["descriptor"]["sel"])
    given = "type_map" in model
    if given:
        _check_type_map(model)
    _expand_data(tr, os.getcwd() if base_dir is None else base_dir)
    for sec, key in ((tr, "stat_file"), (model, "use_srtab"),  # files relative to the input file, as the systems
                     (model.get("modifier") or {}, "model_name")):
        if sec.get(key) is not None:
            sec[key] = os.path.normpath(os.path.join(os.getcwd() if base_dir is None else base_dir, sec[key]))
    if not given:
        from .type_map import infer_type_map

        model["type_map"] = infer_type_map(out)
        log.info("model/type_map not given: types from the data, named %s", model["type_map"])
        _check_type_map(model)
    return out


def normalize_model(section: dict) -> dict:
    """A ``model`` section alone, normalised as ``normalize`` does (no data: ``type_map`` required)."""
    schema = model_args()
    out = _apply_schema(schema, section)
    unsupported.check({"model": out})
    unsupported.strip({"model": out})
    if "type_map" not in out:
        raise ConfigError("model/type_map is required")
    _fill_precisions(out)
    _check_type_embedding(out)
    _check_type_map(out)
    return out


def _apply_schema(schema: Argument, value: dict) -> dict:
    try:
        out = schema.normalize_value(value, trim_pattern="_*")
        schema.check_value(out, strict=True)
    except ArgumentError as e:
        raise ConfigError(_explain(e, schema)) from None
    out.pop("type", None) if schema.name == "model" else out["model"].pop("type", None)  # only "standard"
    return out


def _explain(e: ArgumentError, schema: Argument) -> str:
    """dargs' message, plus the allowed choices when a variant tag (``type``) is wrong."""
    msg = str(e)
    if "invalid choice" in msg:
        arg = schema
        for key in filter(None, e.path.split("/")):
            arg = arg.sub_fields.get(key) or next(
                (c.sub_fields[key] for v in arg.sub_variants.values() for c in v.choice_dict.values()
                 if key in c.sub_fields), arg)
        tags = [t for v in arg.sub_variants.values() for t in [*v.choice_dict, *v.choice_alias]]
        msg += f" Allowed values: {', '.join(tags)}."
    return msg


def _check_length(tr: dict) -> None:
    """numb_steps, or numb_epoch (turned into steps once the data are read: data.batch.epoch_steps)."""
    if tr.get("numb_epoch") is None:
        tr.pop("numb_epoch", None)
        if "numb_steps" not in tr:
            raise ConfigError("training/numb_steps or training/numb_epoch is required (the number of training steps, "
                              "or of passes over the training data; DeePMD-kit's aliases: stop_batch, num_steps, "
                              "num_step, numb_step; num_epoch, num_epochs, numb_epochs)")
    elif "numb_steps" in tr:
        log.warning("training/numb_steps (%d) and training/numb_epoch (%s) are both given: numb_steps is used, as in "
                    "DeePMD-kit's TensorFlow backend", tr["numb_steps"], tr.pop("numb_epoch"))
    elif isinstance(tr["numb_epoch"], bool) or not tr["numb_epoch"] > 0 or tr["numb_epoch"] == float("inf"):
        raise ConfigError(f"training/numb_epoch: got {tr['numb_epoch']!r}; need a positive finite number")


def _drop_set_prefix(tr: dict) -> None:
    for name in ("training_data", "validation_data"):
        data = tr.get(name)
        if isinstance(data, dict) and "set_prefix" in data:
            log.warning("training/%s/set_prefix (%r) has no effect, as in DeePMD-kit: the sets are the folders "
                        "set.*", name, data.pop("set_prefix"))


def _fill_precisions(model: dict) -> None:
    for part in (model["descriptor"], model["fitting_net"]):
        if part["precision"] == "default":
            part["precision"] = "float64"


def _check_sel_spec(sel) -> None:
    if isinstance(sel, str):
        from deepmd_paddle.data.stats import auto_sel_factor

        try:
            auto_sel_factor(sel)
        except ValueError:
            raise ConfigError(f"model/descriptor/sel: got {sel!r}; allowed: a list of ints (one per type), "
                              "'auto' or 'auto:<factor>'") from None


def _check_type_map(model: dict) -> None:
    type_map = model["type_map"]
    ntypes = len(type_map)
    if ntypes == 0 or len(set(type_map)) != ntypes:
        raise ConfigError(f"model/type_map must list distinct element names, got {type_map}")
    sel = model["descriptor"]["sel"]
    if isinstance(sel, list) and len(sel) != ntypes:
        raise ConfigError(f"model/descriptor/sel has {len(sel)} entries but model/type_map has {ntypes} types")
    _check_properties(model)  # element properties, checked before any data is read


def _expand_data(tr: dict, base_dir: str) -> None:
    from deepmd_paddle.data.batch import check_batch_size, system_probs
    from deepmd_paddle.data.system import DataError, expand_systems

    for name in ("training_data", "validation_data"):
        data = tr[name]
        if data is not None:
            data["systems"] = expand_systems(data["systems"], base_dir, data["fmt"], f"training/{name}/systems")
            nsys = len(data["systems"])
            try:  # the sampling rules live in data.batch; check them here, before any data is read
                check_batch_size(data["batch_size"], nsys)
                if not str(data["batch_size"]).startswith("filter:"):  # (filter: the systems kept decide)
                    system_probs(data["auto_prob"], data["sys_probs"], [1] * nsys)
            except DataError as e:
                raise ConfigError(f"training/{name}/{e}") from None


def _check_type_embedding(model: dict) -> None:
    """DeePMD-kit's model-level ``type_embedding`` (a learned type vector) stays at model level: it
    makes DeePMD-kit's type-embedding model, whose one embedding net and one fitting net both take
    the type vector. deepmd_paddle's own ``descriptor.type_embedding`` (element properties, or a
    learned vector for the embedding net only, one fitting net per type) stays in the descriptor;
    true or a list of properties given at model level move there."""
    top = model.get("type_embedding")
    desc = model["descriptor"]
    if desc.get("type") == "se_a_ebd_v2" and desc["type_embedding"] not in (None, False):
        raise ConfigError("model/descriptor/type_embedding: se_a_ebd_v2 takes DeePMD-kit's model-level "
                          "model/type_embedding section; the descriptor's own type_embedding is for se_e2_a")
    if top is None or top is False:
        model.pop("type_embedding", None)
    elif desc["type_embedding"] not in (None, False):
        raise ConfigError("type_embedding is given both in model and in model/descriptor; give it once")
    elif not isinstance(top, dict):
        desc["type_embedding"] = model.pop("type_embedding")
    for spec in (model.get("type_embedding"), desc["type_embedding"]):
        if isinstance(spec, dict):
            if not spec["neuron"] or min(spec["neuron"]) < 1:
                raise ConfigError(f"type_embedding/neuron: need at least one positive width, got {spec['neuron']}")
            if spec["precision"] == "default":
                spec["precision"] = desc["precision"]


def _check_properties(model: dict) -> None:
    """Element properties as type vectors: every element of type_map must have them."""
    spec = model["descriptor"]["type_embedding"]
    if spec is None or spec is False or isinstance(spec, dict):
        return
    from deepmd_paddle.model.elements import PROPERTIES, PropertyError, property_matrix

    try:
        property_matrix(model["type_map"], PROPERTIES if spec is True else spec)
    except PropertyError as e:
        raise ConfigError(f"model/descriptor/type_embedding: {e}") from None
