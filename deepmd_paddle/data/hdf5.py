"""DeePMD systems stored in HDF5 files (what dpdata's ``deepmd/hdf5`` format writes).

A system is a group laid out like a DeePMD npy folder: datasets ``type.raw``, optionally
``type_map.raw`` (element names as bytes) and ``nopbc``, and groups ``set.*`` holding
``coord.npy``, ``box.npy``, ``energy.npy``, ... It is addressed as ``file.hdf5#/path/to/group``
(DeePMD-kit's notation; ``file.hdf5`` alone is the root group). As in DeePMD-kit, ``systems``
naming a group (or a whole file) stands for every group below it that holds ``type.raw``, in
the file's order, then the group itself when it holds one. (Reading only: data.system checks
the arrays and builds the System; errors are ValueErrors that it turns into DataErrors.)
"""
from __future__ import annotations

import os

import numpy as np



def split(path: str) -> tuple[str, str]:
    """(file, group) of ``file#group``; the group is ``/`` when not given."""
    file, _, group = path.partition("#")
    return file, "/" + group.strip("/") if group.strip("/") else "/"


def is_hdf5(path: str) -> bool:
    """``path`` (``file`` or ``file#group``) names an HDF5 file."""
    file = split(path)[0]
    if not os.path.isfile(file):
        return False
    import h5py

    return h5py.is_hdf5(file)


def _open(file: str):
    import h5py

    try:
        return h5py.File(file, "r")
    except OSError as e:
        raise ValueError(f"{file}: not a readable HDF5 file ({e})") from None


def expand(path: str) -> list[str]:
    """The systems (``file#/group``) at or below ``path``, DeePMD-kit's order (module docstring)."""
    import h5py

    file, group = split(path)
    with _open(file) as f:
        if group not in f or not isinstance(f[group], h5py.Group):
            raise ValueError(f"{path}: {file} has no group {group!r}")
        found = []

        def visit(name, obj):
            if isinstance(obj, h5py.Group) and isinstance(obj.get("type.raw"), h5py.Dataset):
                found.append(f"{file}#{obj.name}")

        f[group].visititems(visit)
        if isinstance(f[group].get("type.raw"), h5py.Dataset):
            found.append(f"{file}#{group}")
    return found


def read_dataset(folder: str, name: str):
    """Dataset ``name`` of the group ``folder`` (``file#/group``) as an array, None when absent."""
    file, group = split(folder)
    with _open(file) as f:
        item = f.get(f"{group.rstrip('/')}/{name}")
        return None if item is None else np.asarray(item[()])


def read_system(path: str) -> dict:
    """The group ``path`` (``file#/group``) as plain arrays: {"types": type.raw, "names": type_map.raw
    or None, "nopbc": bool, "sets": [(``file#/group/set.NNN``, {dataset name: array})]}; data.system
    checks and assembles them."""
    import h5py

    file, group = split(path)
    with _open(file) as f:
        g = f.get(group)
        if not isinstance(g, h5py.Group) or not isinstance(g.get("type.raw"), h5py.Dataset):
            raise ValueError(f"{path}: not a DeePMD system (no dataset type.raw in group {group} of {file})")
        names = None
        if "type_map.raw" in g:
            names = [n.decode() if isinstance(n, bytes) else str(n) for n in np.asarray(g["type_map.raw"][()]).ravel()]
        sets = [(f"{file}#{g[k].name}", {n: np.asarray(d[()]) for n, d in g[k].items() if isinstance(d, h5py.Dataset)})
                for k in sorted(g) if k.startswith("set.") and isinstance(g[k], h5py.Group)]
        return {"types": np.asarray(g["type.raw"][()]).reshape(-1), "names": names, "nopbc": "nopbc" in g,
                "sets": sets}
