"""DeePMD-kit's backend-neutral model files: ``.dp`` (HDF5) and ``.yaml``.

Format (DeePMD-kit v3, ``deepmd/dpmodel/utils/serialization.py`` documents it):
- ``.dp``: HDF5; the root attribute ``json`` holds ``{"software", "version", "backend", "model",
  "model_def_script", "@variables", ...}``; every array is a root dataset ``variable_NNNN`` and
  the dict refers to it as ``"/variable_NNNN"`` wherever an ``@variables`` entry holds an array.
- ``.yaml``: the same dict, each array inline as
  ``{"@class": "np.ndarray", "@is_variable": true, "@version": 1, "dtype": ..., "value": [...]}``.

A mixed-precision model (``training/mixed_precision``) is written with its setting as a top-level
``"mixed_precision": {"output_prec", "compute_prec"}`` entry, read back here (the nets round again);
DeePMD-kit does not read that entry: it evaluates such a file's nets in output_prec without rounding,
as it does for the .dp of its own mixed-precision TensorFlow models.

Only ``standard`` energy models with an ``se_e2_a`` descriptor and an ``ener`` fitting are read;
anything else raises ``NotImplementedError`` naming the part.
"""
from __future__ import annotations

import datetime
import json
import os

import numpy as np

from .._version import __version__
from ..model import EnergyModel, mixed_precision
from ..utils.files import atomic_output


def load_dp(path: str) -> EnergyModel:
    """Read a DeePMD-kit ``.dp``/``.yaml`` file into an :class:`EnergyModel`; its weights are
    checked against the model its own description builds (names, shapes) and for finite values."""
    from ..model.weights import check_state

    data, arrays = read_dict(path)
    if not isinstance(data.get("model"), dict):
        raise ValueError(f"{path}: no 'model' entry; is this a DeePMD-kit model file?")
    try:
        model = EnergyModel.deserialize(data["model"], arrays)
        mixed_precision.enable(model, data.get("mixed_precision"))  # deepmd_paddle's record (save_dp)
        reference = EnergyModel.from_config(model.get_config())
    except (KeyError, TypeError, IndexError, AttributeError, AssertionError) as e:  # Paddle asserts on shapes
        raise ValueError(f"{path}: the model description and its arrays are incomplete or inconsistent "
                         f"({type(e).__name__}: {e}); expected DeePMD-kit's serialized model") from None
    check_state(reference, {k: v.numpy() for k, v in model.state_dict().items()}, path)
    mnd = (data.get("@variables") or {}).get("min_nbor_dist")
    if mnd is not None:
        model.min_nbor_dist = float(np.asarray(arrays(mnd)).reshape(-1)[0])
    return model


def read_dict(path: str):
    """(the file's dict, ``arrays(ref) -> ndarray``)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"model file {path!r} does not exist")
    ext = os.path.splitext(path)[1].lower()
    if ext == ".dp":
        import h5py
        try:
            f = h5py.File(path, "r")
        except OSError as e:
            raise ValueError(f"{path}: not an HDF5 .dp file ({e})") from None
        with f:
            if "json" not in f.attrs:
                raise ValueError(f"{path}: HDF5 file without the 'json' root attribute; not a DeePMD-kit .dp model")
            try:
                data = json.loads(f.attrs["json"])
                store = {k: f[k][()] for k in f.keys()}
            except (ValueError, OSError, KeyError) as e:  # truncated datasets, a garbled description
                raise ValueError(f"{path}: unreadable DeePMD-kit .dp model (expected the 'json' description and "
                                 f"its variable_NNNN arrays: {e})") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: the 'json' attribute is not a mapping; not a DeePMD-kit .dp model")

        def arrays(ref):
            if isinstance(ref, str):
                if ref.lstrip("/") not in store:
                    raise ValueError(f"{path}: the model refers to array {ref!r}, which the file does not hold")
                return np.asarray(store[ref.lstrip("/")])
            return _inline(ref)

        return data, arrays
    if ext in (".yaml", ".yml"):
        import yaml
        try:
            with open(path, encoding="utf-8") as fh:
                data = yaml.safe_load(fh)
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            raise ValueError(f"{path}: not a readable YAML model file (expected DeePMD-kit's serialized "
                             f"model: {str(e).splitlines()[0]})") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: not a DeePMD-kit model YAML (top level is not a mapping)")
        return data, _inline
    raise ValueError(f"{path}: unknown model file extension {ext!r}; allowed: .dp, .yaml, .yml")


def _inline(ref):
    if isinstance(ref, dict) and ref.get("@class") == "np.ndarray":
        return np.asarray(ref["value"], dtype=np.dtype(ref["dtype"]))
    return np.asarray(ref)


def save_dp(model: EnergyModel, path: str):
    """Write ``model`` as a DeePMD-kit ``.dp`` or ``.yaml`` file."""
    mdict, arrays = model.serialize()
    top_vars = {}
    if getattr(model, "min_nbor_dist", None) is not None:
        key = f"/variable_{len(arrays):04d}"
        arrays[key] = np.asarray(model.min_nbor_dist, dtype="float64")
        top_vars["min_nbor_dist"] = key
    script = {k: v for k, v in model.get_config().items() if k != "mixed_precision"}  # DeePMD-kit's model section
    data = {
        "software": "deepmd_paddle", "version": __version__, "backend": "Paddle",
        "time": str(datetime.datetime.now(datetime.timezone.utc)),
        "model": mdict, "model_def_script": script, "@variables": top_vars,
    }
    if model.mixed_precision is not None:  # ours, beside DeePMD-kit's keys (module docstring)
        data["mixed_precision"] = dict(model.mixed_precision)
    ext = os.path.splitext(path)[1].lower()
    if ext not in (".dp", ".yaml", ".yml"):
        raise ValueError(f"{path}: unknown model file extension {ext!r}; allowed: .dp, .yaml, .yml")
    with atomic_output(path) as tmp:
        if ext == ".dp":
            import h5py
            with h5py.File(tmp, "w") as f:
                f.attrs["json"] = json.dumps(data)
                for key, value in arrays.items():
                    f.create_dataset(key.lstrip("/"), data=value)
        else:
            import yaml
            with open(tmp, "w") as fh:
                yaml.safe_dump(_replace_refs(data, arrays), fh)


def _replace_refs(obj, arrays):
    if isinstance(obj, dict):
        return {k: _replace_refs(v, arrays) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_replace_refs(v, arrays) for v in obj]
    if isinstance(obj, str) and obj in arrays:
        a = arrays[obj]
        return {"@class": "np.ndarray", "@is_variable": True, "@version": 1, "dtype": a.dtype.name, "value": a.tolist()}
    return obj
