"""One labelled system: frames of the same atoms, read from a DeePMD folder or through dpdata.

DeePMD npy layout (units: Angstrom, eV, eV/Angstrom; virial in eV, DeePMD-kit's sign)::

    type.raw          natoms ints, the type of each atom
    type_map.raw      optional, the element name of each type index of type.raw
    nopbc             optional, empty file: open boundaries (no box.npy needed)
    set.*/coord.npy   nf x natoms*3
    set.*/box.npy     nf x 9, rows a, b, c
    set.*/energy.npy  nf            (labels are optional, each one independently)
    set.*/force.npy   nf x natoms*3
    set.*/virial.npy  nf x 9

Types are remapped to the model's ``type_map`` through ``type_map.raw`` (or the element names
dpdata reads); without ``type_map.raw`` the indices are taken as the model's.
"""
from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field

import numpy as np

LABELS = {"energy": 1, "force": 3, "virial": 9}  # label -> values per frame (energy, virial) or per atom


class DataError(ValueError):
    """Bad training data; the message names the system and file."""


@dataclass
class System:
    path: str
    atype: np.ndarray  # natoms, int32, indices into the model's type_map
    coord: np.ndarray  # nf x natoms x 3
    box: np.ndarray | None  # nf x 9, None for open boundaries
    labels: dict = field(default_factory=dict)  # name -> array (energy nf, force nf x natoms x 3, virial nf x 9)
    found: dict = field(default_factory=dict)  # name -> nf bool: the frame has this label
    sources: list = field(default_factory=list)  # (set folder, its frame count) in frame order; [] for dpdata
    params: dict = field(default_factory=dict)  # fparam nf x nfp, aparam nf x natoms x nap (data.params.attach)
    keys: list = field(default_factory=list)  # an LMDB database's key of each frame (data.lmdb); [] otherwise
    frame_fields: dict = field(default_factory=dict)  # LMDB: fparam, aparam, atom_ener, ... per frame (lmdb.stacked)

    @property
    def nframes(self) -> int:
        return self.coord.shape[0]

    @property
    def natoms(self) -> int:
        return self.atype.shape[0]

    def type_counts(self, ntypes: int) -> np.ndarray:
        return np.bincount(self.atype, minlength=ntypes)[:ntypes]

    def where(self, frame: int, name: str = "box.npy") -> str:
        """Frame ``frame`` of the system named for a message: its set's file and its index there."""
        if self.keys:  # an LMDB database's frame
            return f"{self.path.partition('#')[0]}, frame {self.keys[frame]}"
        start = 0
        for folder, n in self.sources:
            if frame < start + n:
                return f"{os.path.join(folder, name)}, frame {frame - start}"
            start += n
        return f"{self.path}, frame {frame}"


def load_system(path: str, type_map: list[str], fmt: str | None = None) -> System:
    """Read ``path`` (a DeePMD npy folder, or anything dpdata reads with ``fmt``)."""
    if _lmdb(path, fmt):  # DeePMD-kit's LMDB database, or one group of its frames (data.lmdb)
        return _load_lmdb(path, type_map)
    if fmt in (None, "deepmd/hdf5") and _hdf5(path):  # file.hdf5#/group (data.hdf5)
        return _load_hdf5(path, type_map)
    if fmt is None or (fmt in ("deepmd", "deepmd/npy") and os.path.isfile(os.path.join(path, "type.raw"))):
        return _load_npy(path, type_map)
    return _load_dpdata(path, type_map, fmt)


def _load_npy(path: str, type_map: list[str]) -> System:
    type_file = os.path.join(path, "type.raw")
    if not os.path.isfile(type_file):
        raise DataError(f"{path}: not a DeePMD system (no type.raw); for other formats set `fmt`")
    try:
        raw_types = np.loadtxt(type_file, dtype=np.int64, ndmin=1)
    except ValueError as e:
        raise DataError(f"{type_file}: expected one integer atom type per atom ({e})") from None
    names = None
    if os.path.isfile(os.path.join(path, "type_map.raw")):
        with open(os.path.join(path, "type_map.raw")) as f:
            names = f.read().split()
    atype = _remap(raw_types, names, type_map, path)
    nopbc = os.path.isfile(os.path.join(path, "nopbc"))
    sets = sorted(glob.glob(os.path.join(path, "set.*")))
    if not sets:
        raise DataError(f"{path}: no set.* folders")
    natoms = len(atype)
    coords, boxes, labels, found = [], [], {k: [] for k in LABELS}, {k: [] for k in LABELS}
    for s in sets:
        coord = _read(os.path.join(s, "coord.npy"), natoms * 3, required=True)
        nf = coord.shape[0]
        if nf == 0:
            raise DataError(f"{os.path.join(s, 'coord.npy')}: no frames; remove the empty set {s}")
        coords.append(coord.reshape(nf, natoms, 3))
        if not nopbc:
            boxes.append(_read(os.path.join(s, "box.npy"), 9, required=True, nframes=nf))
            check_volumes(boxes[-1], lambda f: f"{os.path.join(s, 'box.npy')}, frame {f}")
        for name, per in LABELS.items():
            width = per * natoms if name == "force" else per
            arr = _read(os.path.join(s, f"{name}.npy"), width, nframes=nf)
            found[name].append(np.full(nf, arr is not None))
            labels[name].append(np.zeros((nf, width)) if arr is None else arr)
    coord = np.concatenate(coords)
    nf = coord.shape[0]
    return System(
        path=path, atype=atype, coord=coord, box=None if nopbc else np.concatenate(boxes),
        labels={k: _shape(k, np.concatenate(v), nf, natoms) for k, v in labels.items()},
        found={k: np.concatenate(v) for k, v in found.items()}, sources=[(s, len(c)) for s, c in zip(sets, coords)],
    )


def _load_hdf5(path: str, type_map: list[str]) -> System:
    """A system stored as a group of an HDF5 file (data.hdf5), checked as ``_load_npy`` checks a folder."""
    from deepmd_paddle.data import hdf5

    try:
        raw = hdf5.read_system(path)
    except ValueError as e:
        raise DataError(str(e)) from None
    if raw["types"].dtype.kind not in "iu":
        raise DataError(f"{path}/type.raw: dtype {raw['types'].dtype}; expected one integer type per atom")
    atype = _remap(raw["types"].astype(np.int64), raw["names"], type_map, path)
    natoms = len(atype)
    if not raw["sets"]:
        raise DataError(f"{path}: no set.* groups")
    coords, boxes, labels, found = [], [], {k: [] for k in LABELS}, {k: [] for k in LABELS}
    for where, arrays in raw["sets"]:
        def read(name, width, nframes=None, required=False):
            if name not in arrays:
                if required:
                    raise DataError(f"{where}/{name} is missing")
                return None
            return validated(arrays[name], f"{where}/{name}", width, nframes)

        coord = read("coord.npy", natoms * 3, required=True)
        nf = coord.shape[0]
        if nf == 0:
            raise DataError(f"{where}/coord.npy: no frames")
        coords.append(coord.reshape(nf, natoms, 3))
        if not raw["nopbc"]:
            boxes.append(read("box.npy", 9, nf, required=True))
            check_volumes(boxes[-1], lambda k: f"{where}/box.npy, frame {k}")
        for name, per in LABELS.items():
            arr = read(f"{name}.npy", per * natoms if name == "force" else per, nf)
            found[name].append(np.full(nf, arr is not None))
            labels[name].append(np.zeros((nf, per * natoms if name == "force" else per)) if arr is None else arr)
    coord = np.concatenate(coords)
    nf = coord.shape[0]
    return System(path=path, atype=atype, coord=coord, box=None if raw["nopbc"] else np.concatenate(boxes),
                  labels={k: _shape(k, np.concatenate(v), nf, natoms) for k, v in labels.items()},
                  found={k: np.concatenate(v) for k, v in found.items()}, sources=[(w, len(c)) for (w, _), c in
                                                                                  zip(raw["sets"], coords)])


def _load_lmdb(path: str, type_map: list[str]) -> System:
    """One group of alike frames of an LMDB database (data.lmdb reads and checks them)."""
    from deepmd_paddle.data import lmdb

    try:
        raw = lmdb.read(path, type_map)
    except ValueError as e:
        raise DataError(str(e)) from None
    nf, natoms = raw["coord"].shape[:2]
    labels = {k: raw["labels"][k] if k in raw["labels"] else np.zeros((nf, per * natoms if k == "force" else per))
              for k, per in LABELS.items()}  # (a label the frames lack: zeros, found False)
    s = System(path=path, atype=_remap(raw["types"], raw["names"], type_map, raw["db"]), coord=raw["coord"],
               box=raw["box"], labels={k: _shape(k, v, nf, natoms) for k, v in labels.items()},
               found={k: np.full(nf, k in raw["labels"]) for k in LABELS}, keys=raw["keys"], frame_fields=raw["other"])
    if s.box is not None:
        check_volumes(s.box, s.where)
    return s


def _read(fname: str, width: int, required: bool = False, nframes: int | None = None):
    if not os.path.isfile(fname):
        if required:
            raise DataError(f"{fname} is missing")
        return None
    try:
        raw = np.load(fname, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise DataError(f"{fname}: not a readable .npy array of numbers ({e})") from None
    return validated(raw, fname, width, nframes)


def validated(raw: np.ndarray, fname: str, width: int, nframes: int | None = None) -> np.ndarray:
    """``raw`` as nframes x width float64: real finite numbers of that shape, else a ``DataError``
    naming ``fname``."""
    if raw.dtype.kind not in "fiu":  # booleans would become 0/1, complex numbers lose their imaginary part
        raise DataError(f"{fname}: dtype {raw.dtype} ({_KINDS.get(raw.dtype.kind, 'not numbers')}); "
                        "expected real numbers (float or int)")
    arr = raw.astype(np.float64)
    nf = arr.shape[0] if arr.ndim else 1
    if arr.size != nf * width or (nframes is not None and nf != nframes):
        raise DataError(f"{fname}: shape {arr.shape} does not fit {nframes or nf} frames x {width} values")
    arr = arr.reshape(nf, width)
    bad = np.argwhere(~np.isfinite(arr))
    if len(bad):
        raise DataError(f"{fname}: {len(bad)} NaN/inf values, first in frame {bad[0][0]}; "
                        "remove or fix those frames")
    return arr


_KINDS = {"b": "booleans", "c": "complex numbers", "U": "text", "S": "bytes", "O": "objects", "V": "records",
          "M": "dates", "m": "time spans"}


def check_volumes(box: np.ndarray, where) -> None:
    """Raise ``DataError`` naming ``where(frame)`` for the first box (nf x 9, rows a, b, c) whose
    three vectors span no volume."""
    b = box.reshape(-1, 3, 3)
    det, scale = np.linalg.det(b), np.prod(np.linalg.norm(b, axis=-1), axis=-1)
    bad = np.flatnonzero(~(np.abs(det) > 1e-10 * scale) | (scale == 0.0))
    if bad.size:
        raise DataError(f"box of {where(int(bad[0]))} has zero volume (det = {det[bad[0]]:.3g}; {bad.size} such "
                        "frame(s)); its rows must be three independent lattice vectors a, b, c in Angstrom")


def _shape(name: str, arr: np.ndarray, nf: int, natoms: int) -> np.ndarray:
    return arr.reshape({"energy": (nf,), "force": (nf, natoms, 3), "virial": (nf, 9)}[name])


def _remap(raw_types: np.ndarray, names: list[str] | None, type_map: list[str], where: str) -> np.ndarray:
    """Data type indices -> model type indices, by element name when the data names them."""
    if raw_types.size and raw_types.min() < 0:
        raise DataError(f"{where}: negative atom type in type.raw")
    if names is None:
        if raw_types.size and raw_types.max() >= len(type_map):
            raise DataError(f"{where}: type.raw has type {raw_types.max()} but the model's type_map "
                            f"{type_map} has only {len(type_map)} types (add type_map.raw to name them)")
        return raw_types.astype(np.int32)
    if raw_types.size and raw_types.max() >= len(names):
        raise DataError(f"{where}: type.raw has type {raw_types.max()} but type_map.raw names only {names}")
    used = sorted(set(raw_types.tolist()))
    missing = [names[t] for t in used if names[t] not in type_map]
    if missing:
        raise DataError(f"{where}: element(s) {missing} are not in the model's type_map; "
                        f"allowed: {type_map} (add them to model/type_map)")
    lookup = np.array([type_map.index(n) if n in type_map else -1 for n in names], dtype=np.int32)
    return lookup[raw_types]


def _load_dpdata(path: str, type_map: list[str], fmt: str) -> System:
    import dpdata

    try:
        sys = dpdata.LabeledSystem(path, fmt=fmt)
    except Exception:  # dpdata raises format-specific errors; unlabelled files land here too
        try:
            sys = dpdata.System(path, fmt=fmt)
        except Exception as e:
            raise DataError(f"{path}: dpdata cannot read it with fmt={fmt!r}: {e}") from None
    d = sys.data
    nf, natoms = d["coords"].shape[:2]
    if nf == 0:
        raise DataError(f"{path}: dpdata read no frames with fmt={fmt!r}")
    atype = _remap(np.asarray(d["atom_types"]), list(d["atom_names"]), type_map, path)
    nopbc = bool(d.get("nopbc", False))
    labels, found = {}, {}
    for name, key in (("energy", "energies"), ("force", "forces"), ("virial", "virials")):
        if key in d:
            arr = np.asarray(d[key], dtype=np.float64)
            bad = np.argwhere(~np.isfinite(arr.reshape(nf, -1)))
            if len(bad):
                raise DataError(f"{path}: {len(bad)} NaN/inf values in {key}, first in frame {bad[0][0]}")
            labels[name], found[name] = arr, np.ones(nf, bool)
        else:
            labels[name] = np.zeros((nf, natoms, 3) if name == "force" else (nf, 9) if name == "virial" else nf)
            found[name] = np.zeros(nf, bool)
    box = None if nopbc else np.asarray(d["cells"], dtype=np.float64).reshape(nf, 9)
    if box is not None:
        check_volumes(box, lambda f: f"{path}, frame {f}")
    return System(
        path=path, atype=atype, coord=np.asarray(d["coords"], dtype=np.float64), box=box,
        labels={k: _shape(k, v, nf, natoms) for k, v in labels.items()}, found=found,
    )


def expand_systems(spec, base_dir: str, fmt: str | None, key: str) -> list[str]:
    """Absolute system paths from a path, a glob, or a list of these.

    Without ``fmt`` a folder that is not itself a system is searched for folders holding
    ``type.raw`` (DeePMD-kit's rule). A path that matches nothing raises ``DataError`` naming
    ``key``.
    """
    items = [spec] if isinstance(spec, str) else list(spec)
    if not items:
        raise DataError(f"{key}: no systems given")
    out = []
    for item in items:
        item, hash_, group = item.partition("#")  # file.hdf5#/group: a group of an HDF5 file
        path = os.path.normpath(os.path.join(base_dir, os.path.expanduser(item)))
        matches = sorted(glob.glob(path)) if glob.has_magic(path) else [path] if os.path.exists(path) else []
        if not matches:
            raise DataError(f"{key}: {item!r} does not exist (looked for {path})")
        for m in matches:
            if _lmdb(m, fmt):  # an LMDB database: one system per group of alike frames (data.lmdb)
                from deepmd_paddle.data import lmdb

                try:
                    out.extend(lmdb.expand(m + hash_ + group))
                except ValueError as e:
                    raise DataError(f"{key}: {e}") from None
                continue
            if fmt in (None, "deepmd/hdf5") and _hdf5(m):
                from deepmd_paddle.data import hdf5

                try:
                    found = hdf5.expand(m + hash_ + group)
                except ValueError as e:
                    raise DataError(f"{key}: {e}") from None
                if not found:
                    raise DataError(f"{key}: no DeePMD system (a group with type.raw) in {m + hash_ + group}")
                out.extend(found)
                continue
            if hash_:
                raise DataError(f"{key}: {m} is not an HDF5 file, so {item + hash_ + group!r} names nothing")
            if fmt is not None or os.path.isfile(os.path.join(m, "type.raw")):
                out.append(m)
                continue
            found = sorted(os.path.dirname(t) for t in glob.glob(os.path.join(m, "**", "type.raw"), recursive=True))
            if not found:
                raise DataError(f"{key}: no DeePMD system (a folder with type.raw) in {m}; "
                                "for other formats set `fmt` to a dpdata format")
            out.extend(found)
    return out


def _lmdb(path: str, fmt: str | None) -> bool:
    """``path`` (``db`` or ``db#k``) names an LMDB database (DeePMD-kit's rule: data.lmdb.is_lmdb)."""
    from deepmd_paddle.data.lmdb import is_lmdb

    return fmt in (None, "deepmd/lmdb", "lmdb") and is_lmdb(path.partition("#")[0])


def _hdf5(path: str) -> bool:
    """``path`` (``file`` or ``file#group``) is in an HDF5 file."""
    file = path.partition("#")[0]
    if not os.path.isfile(file):
        return False
    from deepmd_paddle.data.hdf5 import is_hdf5

    return is_hdf5(file)
