"""Weights read from a file are checked before a model takes them.

Paddle's ``set_state_dict`` only warns ("Skip loading") on a tensor of the wrong shape and keeps
the random weights the model was built with; a NaN weight makes every energy NaN without a word.
``check_state`` compares every tensor with the model built from the file's own config (names and
shapes) and refuses non-finite values, naming the file and the tensor.
"""
from __future__ import annotations

import numpy as np


def check_state(model, state: dict, source: str, error=ValueError) -> None:
    """Raise ``error`` unless ``state`` (name -> array) holds exactly the tensors of ``model``, each of
    its shape, all finite numbers. ``source`` names the file in the message."""
    expected = {k: list(v.shape) for k, v in model.state_dict().items()}
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise error(f"{source} does not fit the model of its config: missing tensors {missing[:5]}, "
                    f"unexpected {unexpected[:5]}")
    for name, want in expected.items():
        got = list(np.shape(state[name]))
        if got != want:
            raise error(f"{source}: tensor {name} has shape {got}, the model of its config needs {want}; "
                        "the weights do not belong to this configuration")
        check_finite(source, name, state[name], error)


def check_finite(source: str, name: str, value, error=ValueError) -> None:
    """Raise ``error`` naming ``source`` and ``name`` when ``value`` is not an array of finite numbers."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "fiu":
        raise error(f"{source}: tensor {name} has dtype {arr.dtype}; expected floating-point numbers")
    bad = np.flatnonzero(~np.isfinite(arr)) if arr.dtype.kind == "f" else []
    if len(bad):
        raise error(f"{source}: tensor {name} holds {len(bad)} NaN/inf value(s) (first at flat index {bad[0]}); "
                    "the file is corrupt or the training diverged: use an earlier model")
