"""Read any model file into an ``EnergyModel``: DeePMD-kit's ``.dp``/``.yaml``, its frozen
TensorFlow ``.pb`` (read without TensorFlow), or one of our training checkpoints. (Frozen models
are programs, read by ``deepmd_paddle.infer``.)"""
from __future__ import annotations

import os

from ..model import EnergyModel
from . import checkpoint


def load_model(source) -> EnergyModel:
    """An ``EnergyModel`` (eval mode) from a model object, a DeePMD-kit ``.dp``/``.yaml``/``.pb`` file or a
    training checkpoint (folder with a ``checkpoint`` pointer, ``<prefix>-<step>`` or either file)."""
    if isinstance(source, EnergyModel):
        return source.eval()
    path = os.fspath(source)
    ext = os.path.splitext(path)[1].lower()
    if ext == ".pb":  # DeePMD-kit's frozen TensorFlow graph, read without TensorFlow
        from .tf_graph import load_pb

        return load_pb(path).eval()
    if ext in (".pth", ".pt", ".savedmodel"):
        raise ValueError(f"{path}: a DeePMD-kit PyTorch model cannot be read directly; convert it "
                         f"with `dp convert-backend {os.path.basename(path)} model.dp` and use the .dp file")
    if ext in (".dp", ".yaml", ".yml"):
        from .dp_format import load_dp

        return load_dp(path).eval()
    try:
        return checkpoint.load_model(path)
    except checkpoint.CheckpointError as e:
        raise ValueError(f"{path}: not a model. Expected a DeePMD-kit .dp/.yaml file or a training checkpoint "
                         f"(<prefix>-<step>.safetensors + .json, or a folder with a `checkpoint` file): {e}") from None
