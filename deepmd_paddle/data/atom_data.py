"""Per-atom data some loss terms read, set by set, as DeePMD-kit reads them.

``set.*/NAME.npy`` (nf x natoms): ``atom_ener`` (atomic energies, the ``ae`` loss term),
``atom_pref`` (a weight per atom, the ``pf`` term), ``atom_ener_coeff`` (the energy as
sum_i c_i E_i). A set without the file has the label's default value (0, or 1 for
``atom_ener_coeff``) and ``found`` False for its frames, so a batch that draws them leaves the
term out (DeePMD-kit's ``must: false`` requirement). Systems read through dpdata have none; an
LMDB database's frames carry them as fields (data.lmdb).

Sets are folders, or groups of an HDF5 file (``file.hdf5#/system/set.000``: data.hdf5).
"""
from __future__ import annotations

import os

import numpy as np

from deepmd_paddle.data.system import DataError, System, validated


# name -> (values per atom, the value where the file is missing): DeePMD-kit's data requirements
ATOM_DATA = {"atom_ener": (1, 0.0), "atom_pref": (1, 0.0), "atom_ener_coeff": (1, 1.0)}


def attach(sys: System, names) -> System:
    """Read ``names`` (keys of ``ATOM_DATA``) into ``sys.labels``/``sys.found``: nf x natoms (x
    values per atom when more than 1)."""
    for name in names:
        per_atom, default = ATOM_DATA[name]
        if name in sys.labels:
            continue
        shape = (sys.nframes, sys.natoms) + ((per_atom,) if per_atom > 1 else ())
        if sys.keys:  # an LMDB database: a field of each frame (data.lmdb)
            from deepmd_paddle.data.lmdb import stacked

            try:
                values, sys.found[name] = stacked(sys, name, sys.natoms * per_atom, float(default))
            except ValueError as e:
                raise DataError(str(e)) from None
            sys.labels[name] = values.reshape(shape)
            continue
        values, found = [], []
        for folder, nf in sys.sources or [(None, sys.nframes)]:
            arr = None if folder is None else read_set_array(folder, f"{name}.npy", sys.natoms * per_atom, nf)
            found.append(np.full(nf, arr is not None))
            values.append(np.full((nf, sys.natoms * per_atom), float(default)) if arr is None else arr)
        sys.labels[name] = np.concatenate(values).reshape(shape)
        sys.found[name] = np.concatenate(found)
    return sys


def read_set_array(folder: str, fname: str, width: int, nframes: int):
    """``folder/fname`` as nframes x width float64, None when it does not exist; ``folder`` may
    be an HDF5 group (``file#/path``)."""
    if "#" in folder:
        from deepmd_paddle.data.hdf5 import read_dataset

        try:
            raw = read_dataset(folder, fname)
        except ValueError as e:
            raise DataError(str(e)) from None
        where = f"{folder}/{fname}"
    else:
        where = os.path.join(folder, fname)
        if not os.path.isfile(where):
            return None
        try:
            raw = np.load(where, allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise DataError(f"{where}: not a readable .npy array of numbers ({e})") from None
    return None if raw is None else validated(raw, where, width, nframes)
