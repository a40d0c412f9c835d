"""The newest checkpoint under DeePMD-kit's (TensorFlow) file names, for workflows that move them.

DeePMD-kit's TensorFlow trainer leaves ``<prefix>.index``, ``<prefix>.meta`` and
``<prefix>.data-00000-of-00001`` beside its numbered checkpoints (links to the newest), and
workflows rely on those names: DP-GEN tests ``model.ckpt.index`` to choose ``--restart
model.ckpt``, copies the three files back from each training task and hands them to the next
iteration's ``--init-model old/model.ckpt``. After every save, ``checkpoint.save`` calls
``write`` so that the three names hold the newest checkpoint ``<prefix>-<step>`` of this format:

    <prefix>.data-00000-of-00001   its tensors: the ``<prefix>-<step>.safetensors`` file (one shard)
    <prefix>.meta                  its description: the ``<prefix>-<step>.json`` file (the model's
                                   definition, step, run, sampler state)
    <prefix>.index                 JSON: which checkpoint, its step and run, the two file names and
                                   every tensor's dtype and shape

The first two are hard links to the numbered files (copies where the file system has none), so
they stay whole when retention deletes the numbered pair; each name is replaced atomically,
the index last. ``checkpoint.resolve``/``load`` read ``<prefix>`` through these names when no
numbered checkpoint of that prefix is present (the three files alone, as DP-GEN forwards them).
"""
from __future__ import annotations

import json
import os
import shutil

INDEX_FORMAT = "deepmd_paddle.checkpoint-index/1"
INDEX, META, DATA = ".index", ".meta", ".data-00000-of-00001"


def present(prefix: str) -> bool:
    """Whether ``prefix`` has its three files."""
    return all(os.path.isfile(prefix + ext) for ext in (INDEX, META, DATA))


def run_of_index(index_path: str):
    """The run id an index records (None when it records none or cannot be read)."""
    try:
        with open(index_path, encoding="utf-8") as f:
            return json.load(f).get("run")
    except (OSError, ValueError, AttributeError):
        return None


def files(prefix: str) -> tuple[str, str]:
    """(description, tensors) read for ``prefix``."""
    return prefix + META, prefix + DATA


def _link(src: str, dst: str) -> None:
    tmp = f"{dst}.tmp{os.getpid()}"
    try:
        try:
            os.link(src, tmp)
        except OSError:  # no hard links here: a copy
            shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write(prefix: str, base: str, tensors: dict, step: int, run: str | None, write_text) -> None:
    """Point ``prefix``'s three names at checkpoint ``base`` (= ``<prefix>-<step>``) whose
    ``tensors`` (name -> array) were just written."""
    _link(base + ".safetensors", prefix + DATA)
    _link(base + ".json", prefix + META)
    index = {"format": INDEX_FORMAT, "checkpoint": os.path.basename(base), "step": step, "run": run,
             "meta": os.path.basename(prefix + META), "data": os.path.basename(prefix + DATA),
             "tensors": {k: {"dtype": str(v.dtype), "shape": list(v.shape)} for k, v in sorted(tensors.items())}}
    write_text(prefix + INDEX, json.dumps(index, indent=1))


def check_index(prefix: str, meta: dict, tensors: dict, error) -> None:
    """Raise ``error`` when ``<prefix>.index`` does not describe the checkpoint read from the other two
    files (a file of another checkpoint copied beside them)."""
    path = prefix + INDEX
    try:
        with open(path, encoding="utf-8") as f:
            index = json.load(f)
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise error(f"{path}: not a readable checkpoint index ({e})") from None
    if not isinstance(index, dict) or index.get("format") != INDEX_FORMAT:
        got = index.get("format") if isinstance(index, dict) else type(index).__name__
        raise error(f"{path}: format {got!r}, expected {INDEX_FORMAT!r}")
    listed = index.get("tensors") or {}
    if index.get("step") != meta.get("step") or sorted(listed) != sorted(tensors):
        raise error(f"{path} describes checkpoint {index.get('checkpoint')!r} (step {index.get('step')}), not the "
                    f"step-{meta.get('step')} checkpoint in {prefix + META} and {prefix + DATA}; the three files "
                    "must come from one save")
    for name, entry in listed.items():
        if list(entry.get("shape", [])) != list(tensors[name].shape):
            raise error(f"{path}: tensor {name} has shape {entry.get('shape')} there but "
                        f"{list(tensors[name].shape)} in {prefix + DATA}")
