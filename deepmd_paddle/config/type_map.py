"""``model/type_map`` left out, as DeePMD-kit allows: the model's types are the indices of the
systems' ``type.raw``.

DeePMD-kit then ignores ``type_map.raw``. deepmd_paddle needs a name per type (its data loader maps
``type_map.raw`` names onto the model's), so the names come from the systems' ``type_map.raw``
files where these agree index by index, which trains exactly what DeePMD-kit trains; where an index
is named by no system it is called ``type_<i>``. Files that name one index differently are an
error asking for ``model/type_map`` (DeePMD-kit would mix the two elements in one type).
"""
from __future__ import annotations

import os

import numpy as np

from .errors import ConfigError


def infer_type_map(cfg: dict) -> list[str]:
    """The type names of a config without ``model/type_map`` (systems already expanded)."""
    ntypes, names, where = 0, {}, {}
    sel = cfg["model"]["descriptor"].get("sel")
    if isinstance(sel, list):
        ntypes = len(sel)
    for section in ("training_data", "validation_data"):
        data = cfg["training"].get(section)
        if data is None:
            continue
        if data.get("fmt") is not None:
            raise ConfigError(f"model/type_map is required when training/{section}/fmt is set (the types of "
                              f"{data['fmt']} files are element names)")
        for path in data["systems"]:
            try:
                types = np.loadtxt(os.path.join(path, "type.raw"), dtype=np.int64, ndmin=1)
            except (OSError, ValueError) as e:
                raise ConfigError(f"{os.path.join(path, 'type.raw')}: not a list of type indices ({e})") from None
            if types.size:
                ntypes = max(ntypes, int(types.max()) + 1)
            file = os.path.join(path, "type_map.raw")
            if not os.path.isfile(file):
                continue
            with open(file, encoding="utf-8") as f:
                file_names = f.read().split()
            ntypes = max(ntypes, len(file_names))
            for i, name in enumerate(file_names):
                if names.setdefault(i, name) != name:
                    raise ConfigError(
                        f"model/type_map is not given and the systems name type {i} differently: {names[i]!r} in "
                        f"{where[i]}, {name!r} in {file}; DeePMD-kit would take both as one type. Give "
                        "model/type_map (the data are then mapped by their type_map.raw)")
                where.setdefault(i, file)
    if ntypes == 0:
        raise ConfigError("model/type_map is not given and the systems have no atoms to count the types from")
    type_map = [names.get(i, f"type_{i}") for i in range(ntypes)]
    if len(set(type_map)) != ntypes:
        raise ConfigError(f"model/type_map is not given and the systems' type_map.raw names {type_map} are not "
                          "distinct; give model/type_map")
    return type_map
