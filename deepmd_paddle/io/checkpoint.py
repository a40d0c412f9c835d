"""Training checkpoints that load without running code: safetensors + JSON, written atomically.

A checkpoint ``<prefix>-<step>`` is two files::

    <prefix>-<step>.safetensors   model.<name>: weights and statistics (model.state_dict())
                                  optim.<param>.<slot>: Adam's moments and beta powers
    <prefix>-<step>.json          {"format", "step", "run", "config" (the full input, ``sel``
                                   resolved), "state": data sampler positions and generator states,
                                   "min_nbor_dist": the training data's smallest pair distance}

and a pointer file ``checkpoint`` in the same folder holding the latest ``<prefix>-<step>``.
The newest checkpoint is also under DeePMD-kit's names ``<prefix>.index``, ``.meta`` and
``.data-00000-of-00001`` (``ckpt_names``), which workflows such as DP-GEN move between folders.
Each file is written to a temporary name and moved into place with ``os.replace``, tensors
first, JSON next, pointer last, so a crash never leaves a pointer to a half-written pair.
Optimizer slots are keyed by the parameter's structured name (``model.named_parameters()``),
not Paddle's global parameter name, so they load into a model built in another process or
later in the same one.

``run`` names the training run that wrote a checkpoint (a restart continues its source's run);
the safetensors header repeats it with the step, so a pair of files from two runs is refused.
Retention (``keep``) only ever deletes checkpoints of the run that is saving. Loading checks
every tensor against the model the stored config builds (names and shapes) and refuses
non-finite weights: Paddle's ``set_state_dict`` would only warn and keep random weights.
"""
from __future__ import annotations

import glob
import json
import os
import re

import numpy as np
import paddle

from . import ckpt_names

FORMAT = "deepmd_paddle.checkpoint/1"
POINTER = "checkpoint"


class CheckpointError(ValueError):
    """A missing checkpoint, or files that are not one."""


class CorruptCheckpoint(ValueError):
    """A checkpoint whose files are damaged or do not belong together; the message names the file."""


def _atomic_write(path: str, write) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _write_text(path: str, text: str) -> None:
    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
    _atomic_write(path, write)


write_text = _write_text  # a text file written atomically (the trainer's out.json and lcurve)


def optimizer_tensors(model: paddle.nn.Layer, opt: paddle.optimizer.Optimizer) -> dict:
    """Adam's slots as numpy, keyed ``optim.<structured name>.<slot>``."""
    state = opt.state_dict()
    out = {}
    for name, p in model.named_parameters():
        for key, value in state.items():
            if key.startswith(p.name + "_") and isinstance(value, paddle.Tensor):
                out[f"optim.{name}.{key[len(p.name) + 1:]}"] = value.numpy()
    return out


def load_optimizer_tensors(model: paddle.nn.Layer, opt: paddle.optimizer.Optimizer, tensors: dict,
                           source: str = "checkpoint") -> None:
    from deepmd_paddle.model.weights import check_finite

    params = dict(model.named_parameters())
    state = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            name, slot = key[len("optim."):].rsplit(".", 1)
            if name not in params:
                raise CorruptCheckpoint(f"{source}: optimizer state for unknown parameter {name!r}")
            want = list(params[name].shape) if slot.startswith("moment") else [1]
            if list(value.shape) != want:
                raise CorruptCheckpoint(f"{source}: tensor {key} has shape {list(value.shape)}, the model needs "
                                      f"{want}; the file does not belong to this model")
            check_finite(source, key, value, CorruptCheckpoint)
            state[f"{params[name].name}_{slot}"] = paddle.to_tensor(value)
    if state:
        opt.set_state_dict(state)


def save(prefix: str, step: int, model, opt, config: dict, state: dict, keep: int = 5,
         run: str | None = None) -> str:
    """Write checkpoint ``<prefix>-<step>`` and point ``checkpoint`` at it. With a ``run`` id, keep
    the newest ``keep`` checkpoints of that run up to ``step`` and delete its older ones; the
    checkpoints of other runs (and of steps past ``step``) are never touched."""
    from safetensors.numpy import save_file

    base = f"{prefix}-{step}"
    tensors = {f"model.{k}": np.ascontiguousarray(v.numpy()) for k, v in model.state_dict().items()}
    if opt is not None:
        tensors.update(optimizer_tensors(model, opt))
    meta = {"format": FORMAT, "step": step, "run": run, "config": config, "state": state,
            "min_nbor_dist": getattr(model, "min_nbor_dist", None)}  # the training data's; dpp compress reads it
    header = {"format": FORMAT, "step": str(step), "run": run or ""}
    folder = os.path.dirname(os.path.abspath(base))
    os.makedirs(folder, exist_ok=True)
    _atomic_write(base + ".safetensors", lambda tmp: save_file(tensors, tmp, metadata=header))
    _write_text(base + ".json", json.dumps(meta, indent=1))
    ckpt_names.write(prefix, base, tensors, step, run, _write_text)
    _write_text(os.path.join(folder, POINTER), os.path.basename(base) + "\n")
    if run is not None and keep > 0:
        mine = [b for b in list_checkpoints(prefix) if run_of(b) == run and step_of(b) <= step]
        for old in mine[:-keep]:
            for ext in (".safetensors", ".json"):
                if os.path.exists(old + ext):
                    os.remove(old + ext)
    return base


def step_of(base: str) -> int:
    return int(base.rsplit("-", 1)[1])


def run_of(base: str) -> str | None:
    """The run id stored in ``<base>.json`` (None: written before run ids, or unreadable)."""
    try:
        with open(_files(base)[0], encoding="utf-8") as f:
            return json.load(f).get("run")
    except (OSError, ValueError, AttributeError):
        return None


def list_checkpoints(prefix: str) -> list[str]:
    """Bases ``<prefix>-<step>`` that exist, oldest first."""
    pat = re.compile(re.escape(os.path.basename(prefix)) + r"-(\d+)\.json$")
    found = []
    for path in glob.glob(glob.escape(prefix) + "-*.json"):
        m = pat.search(os.path.basename(path))
        if m:
            found.append((int(m.group(1)), path[: -len(".json")]))
    return [b for _, b in sorted(found)]


def _files(base: str) -> tuple[str, str]:
    """(description, tensors) of checkpoint ``base``: ``base.json`` and ``base.safetensors``, or a
    prefix's DeePMD-kit names (``ckpt_names``) when only those are there."""
    if not os.path.isfile(base + ".json") and ckpt_names.present(base):
        return ckpt_names.files(base)
    return base + ".json", base + ".safetensors"


def resolve(path: str) -> str:
    """The base ``<prefix>-<step>`` named by a folder (its pointer file), a base, either file, or
    the prefix itself (``save_ckpt``, e.g. ``out/model.ckpt``: its newest checkpoint, or the one its
    ``.index``/``.meta``/``.data-00000-of-00001`` files hold when no numbered one is there)."""
    if os.path.isdir(path):
        pointer = os.path.join(path, POINTER)
        if not os.path.isfile(pointer):
            raise CheckpointError(f"{path}: folder without a `{POINTER}` pointer file")
        with open(pointer) as f:
            path = os.path.join(path, f.read().strip())
    for ext in (".safetensors", ".json"):
        if path.endswith(ext):
            path = path[: -len(ext)]
    if not os.path.isfile(path + ".json") and list_checkpoints(path):
        path = list_checkpoints(path)[-1]
    if not all(os.path.isfile(f) for f in _files(path)):
        raise CheckpointError(f"checkpoint {path!r} not found (need {path}.safetensors and {path}.json, or "
                              f"{path}.index, .meta and .data-00000-of-00001)")
    return path


def load(path: str) -> tuple[dict, dict]:
    """(tensors, meta) of the checkpoint at ``path`` (see ``resolve``); ``meta["base"]`` is its base.
    A damaged file raises ``CorruptCheckpoint`` naming it and what it should hold."""
    from safetensors import SafetensorError, safe_open

    base = resolve(path)
    desc, data = _files(base)
    try:
        with open(desc, encoding="utf-8") as f:
            meta = json.load(f)
    except (ValueError, UnicodeDecodeError) as e:
        raise CorruptCheckpoint(f"{desc}: not a readable checkpoint description (expected the JSON "
                              f"that `dpp train` writes next to {os.path.basename(data)}: {e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        got = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise CheckpointError(f"{desc}: format {got!r}, expected {FORMAT!r}")
    if not isinstance(meta.get("config"), dict) or not isinstance(meta["config"].get("model"), dict):
        raise CheckpointError(f"{desc}: no 'config.model' section; not a checkpoint description")
    try:
        with safe_open(data, framework="np") as f:
            header = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise CorruptCheckpoint(f"{data}: not a readable safetensors file (truncated or corrupt?): "
                              f"{e}") from None
    for key, want in (("step", str(meta.get("step"))), ("run", meta.get("run") or "")):
        if key in header and header[key] != want:
            raise CorruptCheckpoint(f"{data} was written with {key} {header[key]!r} but {desc} "
                                  f"says {want!r}: the two files come from different checkpoints")
    if data != base + ".safetensors":
        ckpt_names.check_index(base, meta, tensors, CorruptCheckpoint)
    meta["base"] = base
    return tensors, meta


def load_model(path: str):
    """The ``EnergyModel`` stored in a checkpoint, weights loaded, in eval mode."""
    from deepmd_paddle.model import EnergyModel
    from deepmd_paddle.model.mixed_precision import model_section

    tensors, meta = load(path)
    try:
        model = EnergyModel.from_config(model_section(meta["config"]))  # (training/mixed_precision applies)
    except (KeyError, TypeError, ValueError) as e:
        raise CorruptCheckpoint(f"{meta['base']}.json: its model section does not build a model ({e})") from None
    load_model_tensors(model, tensors, meta["base"] + ".safetensors")
    if meta.get("min_nbor_dist") is not None:
        model.min_nbor_dist = float(meta["min_nbor_dist"])
    model.eval()
    return model


def load_model_tensors(model, tensors: dict, source: str = "checkpoint") -> None:
    """Set the model's weights and statistics from ``model.*`` tensors, after checking that they
    are the model's tensors (names and shapes, from the stored config) and finite."""
    from deepmd_paddle.model.weights import check_state

    state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    check_state(model, state, source, CorruptCheckpoint)
    model.set_state_dict(state)
