"""``training/stat_file``: the data statistics computed once, stored in HDF5, read back next time.

DeePMD-kit 3's layout (a file it wrote serves here, and the other way round)::

    <stat_file>/<type_map joined by spaces>/
        <sha1 of the descriptor's settings>/r_<t>   [n, sum R0, sum R0^2]          per centre type t
                                           /a_<t>   [3n, sum R123, sum R123^2]
        bias_atom_energy   ntypes x 1 (the energy bias)
        std_atom_energy    ntypes x 1 (written as ones: deepmd_paddle does not use it)
        observed_type      the element names found in the sampled data (bytes)

The descriptor's key is the sha1 of ``json.dumps({"type": "se_a", "ntypes", "rcut", "rcut_smth``
(both rounded to 2 decimals), ``"nsel", "sel", "mixed_types": false})``, as DeePMD-kit hashes
them. The sums give davg and dstd by data.stats.stat_from_sums. A file holding statistics of
another type_map, or of other descriptor settings (rcut, rcut_smth, sel) and not of this
model's, is refused by name (deepmd_paddle writes one model's statistics per file). Updates go
to a copy that replaces the file when complete.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil

import numpy as np

log = logging.getLogger(__name__)


class StatFileError(ValueError):
    """A statistics file that does not belong to this model, or cannot be read."""


def descriptor_key(ntypes: int, rcut: float, rcut_smth: float, sel: list[int]) -> str:
    spec = {"type": "se_a", "ntypes": ntypes, "rcut": round(rcut, 2), "rcut_smth": round(rcut_smth, 2),
            "nsel": int(sum(sel)), "sel": [int(s) for s in sel], "mixed_types": False}
    return hashlib.sha1(json.dumps(spec).encode("utf-8")).hexdigest()


def _h5():
    import h5py

    return h5py


def read(path: str, type_map: list[str], key: str) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(sums ntypes x 5 as data.stats.env_mat_sums gives them, bias ntypes) from ``path``; each
    None when the file lacks it. Raises StatFileError for another model's file."""
    if not os.path.exists(path):
        return None, None
    h5py = _h5()
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise StatFileError(f"training/stat_file {path}: not a readable HDF5 file ({e})") from None
    with f:
        name = " ".join(type_map)
        maps = sorted(k for k in f if isinstance(f[k], h5py.Group))
        if maps and name not in maps:
            raise StatFileError(f"training/stat_file {path} holds statistics of type_map {[m.split() for m in maps]}, "
                                f"not of this model's {type_map}; give another stat_file (or delete this one)")
        if not maps:
            return None, None
        g = f[name]
        descs = [k for k in g if isinstance(g[k], h5py.Group)]
        if descs and key not in descs:
            raise StatFileError(f"training/stat_file {path} holds descriptor statistics of other settings (rcut, "
                                "rcut_smth or sel differ from this model's); give another stat_file (or delete "
                                "this one)")
        ntypes = len(type_map)
        sums = None
        if key in g and all(f"r_{t}" in g[key] and f"a_{t}" in g[key] for t in range(ntypes)):
            sums = np.zeros((ntypes, 5))
            for t in range(ntypes):
                r, a = np.asarray(g[key][f"r_{t}"][()], np.float64), np.asarray(g[key][f"a_{t}"][()], np.float64)
                if r.shape != (3,) or a.shape != (3,) or not np.isfinite([*r, *a]).all():
                    raise StatFileError(f"training/stat_file {path}: {name}/{key}/r_{t} or a_{t} is not 3 finite "
                                        "numbers")
                sums[t] = [r[1], r[2], a[1], a[2], r[0]]
        bias = None
        if "bias_atom_energy" in g:
            bias = np.asarray(g["bias_atom_energy"][()], np.float64).reshape(-1)
            if bias.shape != (ntypes,) or not np.isfinite(bias).all():
                raise StatFileError(f"training/stat_file {path}: {name}/bias_atom_energy is not {ntypes} finite "
                                    "numbers")
    return sums, bias


def write(path: str, type_map: list[str], key: str, sums: np.ndarray, bias: np.ndarray, observed: list[str]) -> None:
    """Store ``sums`` and ``bias`` (what is there already is kept), through a copy renamed into place."""
    h5py = _h5()
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    if os.path.exists(path):
        shutil.copyfile(path, tmp)
    try:
        with h5py.File(tmp, "a") as f:
            g = f.require_group(" ".join(type_map))
            d = g.require_group(key)
            for t, (sr, sr2, sa, sa2, n) in enumerate(sums):
                for name, value in ((f"r_{t}", [n, sr, sr2]), (f"a_{t}", [3 * n, sa, sa2])):
                    if name not in d:
                        d.create_dataset(name, data=np.array(value, np.float64))
            ntypes = len(type_map)
            for name, value in (("bias_atom_energy", np.asarray(bias, np.float64).reshape(ntypes, 1)),
                                ("std_atom_energy", np.ones((ntypes, 1))),
                                ("observed_type", np.array(sorted(observed), dtype="S"))):
                if name not in g:
                    g.create_dataset(name, data=value)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def statistics(path: str | None, type_map: list[str], descriptor, compute_sums, compute_bias, observed,
               writer: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(sums, bias): read from ``path`` where it has them, else computed (``compute_sums()``,
    ``compute_bias()``) and, by the ``writer`` (rank 0), stored there."""
    if path is None:
        return compute_sums(), compute_bias()
    key = descriptor_key(len(type_map), descriptor.rcut, descriptor.rcut_smth, list(descriptor.sel))
    sums, bias = read(path, type_map, key)
    if sums is not None and bias is not None:
        log.info("statistics read from %s (not computed)", path)
        return sums, bias
    sums = compute_sums() if sums is None else sums
    bias = compute_bias() if bias is None else bias
    if writer:
        write(path, type_map, key, sums, bias, observed())
        log.info("statistics stored in %s", path)
    return sums, bias
