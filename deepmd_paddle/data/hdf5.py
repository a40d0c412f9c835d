"""DeePMD systems stored in HDF5 files (what dpdata's ``deepmd/hdf5`` format writes).

A system is a group laid out like a DeePMD npy folder: datasets ``type.raw``, optionally
``type_map.raw`` (element names as bytes) and ``nopbc``, and groups ``set.*`` holding
``coord.npy``, ``box.npy``, ``energy.npy``, ... It is addressed as ``file.hdf5#/path/to/group``
(DeePMD-kit's notation; ``file.hdf5`` alone is the root group). As in DeePMD-kit, ``systems``
naming a group (or a whole file) stands for every group below it that holds ``type.raw``, in
the file's order, then the group itself when it holds one.
"""
from __future__ import annotations

import os

import numpy as np

from deepmd_paddle.data.system import LABELS, DataError, System, _remap, _shape, check_volumes, validated


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
        raise DataError(f"{file}: not a readable HDF5 file ({e})") from None


def expand(path: str) -> list[str]:
    """The systems (``file#/group``) at or below ``path``, DeePMD-kit's order (module docstring)."""
    import h5py

    file, group = split(path)
    with _open(file) as f:
        if group not in f or not isinstance(f[group], h5py.Group):
            raise DataError(f"{path}: {file} has no group {group!r}")
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


def load(path: str, type_map: list[str]) -> System:
    """The system of the group ``path`` (``file#/group``)."""
    import h5py

    file, group = split(path)
    with _open(file) as f:
        g = f.get(group)
        if not isinstance(g, h5py.Group) or not isinstance(g.get("type.raw"), h5py.Dataset):
            raise DataError(f"{path}: not a DeePMD system (no dataset type.raw in group {group} of {file})")
        raw_types = np.asarray(g["type.raw"][()]).reshape(-1)
        if raw_types.dtype.kind not in "iu":
            raise DataError(f"{path}/type.raw: dtype {raw_types.dtype}; expected one integer type per atom")
        names = None
        if "type_map.raw" in g:
            names = [n.decode() if isinstance(n, bytes) else str(n) for n in np.asarray(g["type_map.raw"][()]).ravel()]
        nopbc = "nopbc" in g
        sets = sorted(k for k in g if k.startswith("set.") and isinstance(g[k], h5py.Group))
        if not sets:
            raise DataError(f"{path}: no set.* groups")
        atype = _remap(raw_types.astype(np.int64), names, type_map, path)
        natoms = len(atype)
        coords, boxes, labels, found, sources = [], [], {k: [] for k in LABELS}, {k: [] for k in LABELS}, []
        for s in sets:
            where = f"{file}#{g[s].name}"

            def read(name, width, nframes=None, required=False):
                if name not in g[s]:
                    if required:
                        raise DataError(f"{where}/{name} is missing")
                    return None
                return validated(np.asarray(g[s][name][()]), f"{where}/{name}", width, nframes)

            coord = read("coord.npy", natoms * 3, required=True)
            nf = coord.shape[0]
            if nf == 0:
                raise DataError(f"{where}/coord.npy: no frames")
            coords.append(coord.reshape(nf, natoms, 3))
            if not nopbc:
                boxes.append(read("box.npy", 9, nf, required=True))
                check_volumes(boxes[-1], lambda k: f"{where}/box.npy, frame {k}")
            for name, per in LABELS.items():
                width = per * natoms if name == "force" else per
                arr = read(f"{name}.npy", width, nf)
                found[name].append(np.full(nf, arr is not None))
                labels[name].append(np.zeros((nf, width)) if arr is None else arr)
            sources.append((where, nf))
    coord = np.concatenate(coords)
    nf = coord.shape[0]
    return System(path=path, atype=atype, coord=coord, box=None if nopbc else np.concatenate(boxes),
                  labels={k: _shape(k, np.concatenate(v), nf, natoms) for k, v in labels.items()},
                  found={k: np.concatenate(v) for k, v in found.items()}, sources=sources)
