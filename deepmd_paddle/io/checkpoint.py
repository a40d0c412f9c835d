"""Training checkpoints that load without running code: safetensors + JSON, written atomically.

A checkpoint ``<prefix>-<step>`` is two files::

    <prefix>-<step>.safetensors   model.<name>: weights and statistics (model.state_dict())
                                  optim.<param>.<slot>: Adam's moments and beta powers
    <prefix>-<step>.json          {"format", "step", "config" (the full input, ``sel`` resolved),
                                   "state": data sampler positions and generator states}

and a pointer file ``checkpoint`` in the same folder holding the latest ``<prefix>-<step>``.
Each file is written to a temporary name and moved into place with ``os.replace``, tensors
first, JSON next, pointer last, so a crash never leaves a pointer to a half-written pair.
Optimizer slots are keyed by the parameter's structured name (``model.named_parameters()``),
not Paddle's global parameter name, so they load into a model built in another process or
later in the same one.
"""
from __future__ import annotations

import glob
import json
import os
import re

import numpy as np
import paddle

FORMAT = "deepmd_paddle.checkpoint/1"
POINTER = "checkpoint"


class CheckpointError(ValueError):
    """A missing or unreadable checkpoint."""


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


def optimizer_tensors(model: paddle.nn.Layer, opt: paddle.optimizer.Optimizer) -> dict:
    """Adam's slots as numpy, keyed ``optim.<structured name>.<slot>``."""
    state = opt.state_dict()
    out = {}
    for name, p in model.named_parameters():
        for key, value in state.items():
            if key.startswith(p.name + "_") and isinstance(value, paddle.Tensor):
                out[f"optim.{name}.{key[len(p.name) + 1:]}"] = value.numpy()
    return out


def load_optimizer_tensors(model: paddle.nn.Layer, opt: paddle.optimizer.Optimizer, tensors: dict) -> None:
    params = dict(model.named_parameters())
    state = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            name, slot = key[len("optim."):].rsplit(".", 1)
            if name not in params:
                raise CheckpointError(f"optimizer state for unknown parameter {name!r}")
            state[f"{params[name].name}_{slot}"] = paddle.to_tensor(value)
    if state:
        opt.set_state_dict(state)


def save(prefix: str, step: int, model, opt, config: dict, state: dict, keep: int = 5) -> str:
    """Write checkpoint ``<prefix>-<step>``, point ``checkpoint`` at it, keep the newest ``keep``."""
    from safetensors.numpy import save_file

    base = f"{prefix}-{step}"
    tensors = {f"model.{k}": np.ascontiguousarray(v.numpy()) for k, v in model.state_dict().items()}
    if opt is not None:
        tensors.update(optimizer_tensors(model, opt))
    meta = {"format": FORMAT, "step": step, "config": config, "state": state}
    _atomic_write(base + ".safetensors", lambda tmp: save_file(tensors, tmp, metadata={"format": FORMAT}))
    _write_text(base + ".json", json.dumps(meta, indent=1))
    folder = os.path.dirname(os.path.abspath(base))
    _write_text(os.path.join(folder, POINTER), os.path.basename(base) + "\n")
    for old in list_checkpoints(prefix)[:-keep] if keep > 0 else []:
        for ext in (".safetensors", ".json"):
            if os.path.exists(old + ext):
                os.remove(old + ext)
    return base


def list_checkpoints(prefix: str) -> list[str]:
    """Bases ``<prefix>-<step>`` that exist, oldest first."""
    pat = re.compile(re.escape(os.path.basename(prefix)) + r"-(\d+)\.json$")
    found = []
    for path in glob.glob(glob.escape(prefix) + "-*.json"):
        m = pat.search(os.path.basename(path))
        if m:
            found.append((int(m.group(1)), path[: -len(".json")]))
    return [b for _, b in sorted(found)]


def resolve(path: str) -> str:
    """The base ``<prefix>-<step>`` named by a folder (its pointer file), a base, either file, or
    the prefix itself (``save_ckpt``, e.g. ``out/model.ckpt``: its newest checkpoint)."""
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
    if not (os.path.isfile(path + ".safetensors") and os.path.isfile(path + ".json")):
        raise CheckpointError(f"checkpoint {path!r} not found (need {path}.safetensors and {path}.json)")
    return path


def load(path: str) -> tuple[dict, dict]:
    """(tensors, meta) of the checkpoint at ``path`` (see ``resolve``)."""
    from safetensors.numpy import load_file

    base = resolve(path)
    with open(base + ".json", encoding="utf-8") as f:
        meta = json.load(f)
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{base}.json: format {meta.get('format')!r}, expected {FORMAT!r}")
    return load_file(base + ".safetensors"), meta


def load_model(path: str):
    """The ``EnergyModel`` stored in a checkpoint, weights loaded, in eval mode."""
    from deepmd_paddle.model import EnergyModel

    tensors, meta = load(path)
    model = EnergyModel.from_config(meta["config"]["model"])
    load_model_tensors(model, tensors)
    model.eval()
    return model


def load_model_tensors(model, tensors: dict) -> None:
    state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    expected = set(model.state_dict())
    if set(state) != expected:
        raise CheckpointError(f"checkpoint does not fit the model: missing {sorted(expected - set(state))[:5]}, "
                              f"unexpected {sorted(set(state) - expected)[:5]}")
    model.set_state_dict(state)

