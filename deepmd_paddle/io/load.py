"""Read any model file into an ``EnergyModel``: one of our frozen models (one file, recognised by
its content whatever its name), DeePMD-kit's ``.dp``/``.yaml``, its frozen TensorFlow ``.pb``
(read without TensorFlow), or one of our training checkpoints."""
from __future__ import annotations

import os

from ..model import EnergyModel
from . import checkpoint


def load_model(source) -> EnergyModel:
    """An ``EnergyModel`` (eval mode) from a model object, a frozen model of ours, a DeePMD-kit
    ``.dp``/``.yaml``/``.pb`` file or a training checkpoint (folder with a ``checkpoint`` pointer,
    ``<prefix>-<step>`` or either file). The content decides before the name: a frozen model of
    ours named ``x.pb`` is read as ours, a TensorFlow graph as TensorFlow's."""
    if isinstance(source, EnergyModel):
        return source.eval()
    path = os.fspath(source)
    from .frozen_file import FrozenFile, FrozenPrefix, frozen_prefix, is_frozen_file

    if os.path.isfile(path) and is_frozen_file(path):
        return FrozenFile(path).model()
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
    prefix = frozen_prefix(path)
    if prefix is not None:
        return FrozenPrefix(prefix).model()  # refuses by name: that layout holds no weights
    try:
        return checkpoint.load_model(path)
    except checkpoint.CheckpointError as e:
        raise ValueError(f"{path}: not a model. Expected a frozen model (`dpp freeze`), a DeePMD-kit .dp/.yaml/.pb "
                         f"file or a training checkpoint (<prefix>-<step>.safetensors + .json, or a folder with a "
                         f"`checkpoint` file): {e}") from None
