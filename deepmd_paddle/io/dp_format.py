"""DeePMD-kit's backend-neutral model files: ``.dp`` (HDF5) and ``.yaml``.

Format (DeePMD-kit v3, ``deepmd/dpmodel/utils/serialization.py`` documents it):
- ``.dp``: HDF5; the root attribute ``json`` holds ``{"software", "version", "backend", "model",
  "model_def_script", "@variables", ...}``; every array is a root dataset ``variable_NNNN`` and
  the dict refers to it as ``"/variable_NNNN"`` wherever an ``@variables`` entry holds an array.
- ``.yaml``: the same dict, each array inline as
  ``{"@class": "np.ndarray", "@is_variable": true, "@version": 1, "dtype": ..., "value": [...]}``.

Only ``standard`` energy models with an ``se_e2_a`` descriptor and an ``ener`` fitting are read;
anything else raises ``NotImplementedError`` naming the part.
"""
from __future__ import annotations

import datetime
import json
import os

import numpy as np

from .._version import __version__
from ..model import EnergyModel


def load_dp(path: str) -> EnergyModel:
    """Read a DeePMD-kit ``.dp``/``.yaml`` file into an :class:`EnergyModel`."""
    data, arrays = read_dict(path)
    if "model" not in data:
        raise ValueError(f"{path}: no 'model' entry; is this a DeePMD-kit model file?")
    model = EnergyModel.deserialize(data["model"], arrays)
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
            data = json.loads(f.attrs["json"])
            store = {k: f[k][()] for k in f.keys()}

        def arrays(ref):
            if isinstance(ref, str):
                return np.asarray(store[ref.lstrip("/")])
            return _inline(ref)

        return data, arrays
    if ext in (".yaml", ".yml"):
        import yaml
        with open(path) as fh:
            data = yaml.safe_load(fh)
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
    data = {
        "software": "deepmd_paddle", "version": __version__, "backend": "Paddle",
        "time": str(datetime.datetime.now(datetime.timezone.utc)),
        "model": mdict, "model_def_script": model.get_config(), "@variables": top_vars,
    }
    ext = os.path.splitext(path)[1].lower()
    tmp = path + ".tmp"
    if ext == ".dp":
        import h5py
        with h5py.File(tmp, "w") as f:
            f.attrs["json"] = json.dumps(data)
            for key, value in arrays.items():
                f.create_dataset(key.lstrip("/"), data=value)
    elif ext in (".yaml", ".yml"):
        import yaml
        data = _replace_refs(data, arrays)
        with open(tmp, "w") as fh:
            yaml.safe_dump(data, fh)
    else:
        raise ValueError(f"{path}: unknown model file extension {ext!r}; allowed: .dp, .yaml, .yml")
    os.replace(tmp, path)


def _replace_refs(obj, arrays):
    if isinstance(obj, dict):
        return {k: _replace_refs(v, arrays) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_replace_refs(v, arrays) for v in obj]
    if isinstance(obj, str) and obj in arrays:
        a = arrays[obj]
        return {"@class": "np.ndarray", "@is_variable": True, "@version": 1, "dtype": a.dtype.name, "value": a.tolist()}
    return obj
