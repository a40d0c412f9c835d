"""DeePMD-kit's LMDB databases as data systems (read as DeePMD-kit 3.2's ``lmdb_data.py`` reads them).

A database is a folder holding ``data.mdb`` (and ``lock.mdb``); ``systems`` names it by its path
(DeePMD-kit's rule: a path ending in ``.lmdb`` or a folder holding ``data.mdb``). Its entries::

    b"__metadata__"   msgpack map: nframes, frame_idx_fmt (default "012d"), type_map (optional:
                      the element of each type index), frame_nlocs, frame_system_ids, ...
    format(i, frame_idx_fmt).encode()   frame i < nframes: msgpack map of fields

An array field is a map ``{"type": numpy dtype name, "shape": [...], "data": raw bytes}``; a number
may stand as itself. Fields (DeePMD-kit's names in brackets)::

    atom_types (atype)  natoms ints       coords (coord)   natoms x 3 Angstrom
    cells (box)         3 x 3, rows a, b, c; absent: open boundaries
    energies (energy)   1 eV              forces (force)   natoms x 3 eV/Angstrom
    virials (virial)    9 eV (DeePMD-kit's sign)
    find_<name>         0 marks the label <name> (energy, force, virial) as absent from the frame
    atomic_<x> -> atom_<x>; fparam, aparam pass through; atom_numbs, atom_names, orig are ignored

fparam, aparam, atom_ener, atom_pref and atom_ener_coeff are read when the model or the loss asks
for them (data.params, data.atom_data: ``stacked``), frame by frame with the npy rules.

Labels are optional frame by frame, as in DeePMD-kit. DeePMD-kit batches frames of equal atom
count together, keeps a batch's labels uniform (it splits the frames of an atom count by which
labels they carry: energy, force, virial, atom_ener, atom_pref, atom_ener_coeff) and reads each
frame's atom types. Here a ``System`` has one atom type per atom
for all its frames, so a database becomes one System per distinct (atom types in order, cells
present or not, labels present): group k (in the order of their first frames) is named
``<database>#<k>``, or just ``<database>`` when there is one group. Frame indices are converted
to the model's ``type_map`` through the database's ``type_map`` as for a npy system's
``type_map.raw``. Errors name the database, the frame key and the field.

``lmdb`` and ``msgpack`` are imported only when a database is read. (Reading only: data.system
makes the System; errors are ValueErrors that it turns into DataErrors.)
"""
from __future__ import annotations

import os

import numpy as np

FIELDS = {"coords": "coord", "cells": "box", "energies": "energy", "forces": "force", "atom_types": "atype",
          "virials": "virial"}  # DeePMD-kit's _KEY_REMAP: the database's names -> DeePMD-kit's
_DB_NAME = {v: k for k, v in FIELDS.items()}  # for messages: the names the database uses
IGNORED = {"atom_numbs", "atom_names", "orig"}  # dropped by DeePMD-kit's decoder too
LABELS = ("energy", "force", "virial")  # optional frame by frame
OTHER = ("fparam", "aparam", "atom_ener", "atom_pref", "atom_ener_coeff")  # read when a model or loss asks for them
TRACKED = LABELS + OTHER[2:]  # frames are grouped by which of these they carry (DeePMD-kit's optional labels)
_SHAPES = {"coords": "natoms x 3", "cells": "3 x 3", "energies": "one number", "forces": "natoms x 3",
           "virials": "3 x 3"}
_INDEX: dict = {}  # (real path, data.mdb mtime and size) -> index: grouping frames reads each of them once


def is_lmdb(path: str) -> bool:
    """``path`` names an LMDB database, by DeePMD-kit's rule (and not a npy system named ``*.lmdb``)."""
    path = os.fspath(path).rstrip("/")
    if os.path.isfile(os.path.join(path, "data.mdb")):
        return True
    return path.endswith(".lmdb") and not os.path.isfile(os.path.join(path, "type.raw"))


def split(path: str) -> tuple[str, int | None]:
    """(database, group) of ``database#k``; group None for the database alone."""
    db, hash_, group = os.fspath(path).partition("#")
    if not hash_:
        return db, None
    if not group.isdigit():
        raise ValueError(f"{path}: after '#' an LMDB system names the number of a group of its frames, got {group!r}")
    return db, int(group)


def _modules(db: str):
    try:
        import lmdb
        import msgpack
    except ImportError as e:
        raise ValueError(f"{db}: reading an LMDB database needs the Python packages lmdb and msgpack "
                         f"(pip install lmdb msgpack): {e}") from None
    return lmdb, msgpack


class _Database:
    """An open, read-only database: its metadata, its frames decoded to plain values."""

    def __init__(self, db: str):
        self.db = db
        self.lmdb, self.msgpack = _modules(db)
        if not os.path.isdir(db):
            raise ValueError(f"{db}: an LMDB database is a folder holding data.mdb; this is not a folder")
        if not os.path.isfile(os.path.join(db, "data.mdb")):
            raise ValueError(f"{db}: not an LMDB database (no data.mdb in the folder)")
        try:
            self.env = self.lmdb.open(db, readonly=True, lock=False, readahead=False, meminit=False)
            self.txn = self.env.begin()
        except self.lmdb.Error as e:
            raise ValueError(f"{db}: not a readable LMDB database ({type(e).__name__}: {e})") from None
        try:
            self._metadata()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self.txn.abort()
        self.env.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _unpack(self, raw: bytes, what: str):
        try:
            value = self.msgpack.unpackb(raw, raw=False)
        except Exception as e:  # msgpack's ExtraData, FormatError, StackError, ValueError, UnicodeDecodeError ...
            raise ValueError(f"{self.db}: {what} is not a msgpack value ({type(e).__name__}: {e})") from None
        if not isinstance(value, dict):
            raise ValueError(f"{self.db}: {what} is a msgpack {type(value).__name__}; expected a map of fields")
        return {k.decode() if isinstance(k, bytes) else str(k): v for k, v in value.items()}

    def _metadata(self) -> None:
        raw = self.txn.get(b"__metadata__")
        if raw is None:
            raise ValueError(f"{self.db}: no __metadata__ entry (DeePMD-kit's LMDB layout keeps nframes, "
                             "frame_idx_fmt and type_map there)")
        meta = self._unpack(raw, "__metadata__")
        nframes, self.fmt = meta.get("nframes"), meta.get("frame_idx_fmt", "012d")
        if isinstance(nframes, bool) or not isinstance(nframes, int) or nframes < 1:
            raise ValueError(f"{self.db}: __metadata__ nframes = {nframes!r}; expected the number of frames (>= 1)")
        try:
            format(0, self.fmt)
        except (TypeError, ValueError):
            raise ValueError(f"{self.db}: __metadata__ frame_idx_fmt = {self.fmt!r} is not an integer format "
                             "such as '012d'") from None
        names = meta.get("type_map")
        if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
            raise ValueError(f"{self.db}: __metadata__ type_map = {names!r}; expected a list of element names")
        self.nframes, self.names = nframes, names

    def key(self, i: int) -> str:
        return format(i, self.fmt)

    def frame(self, i: int) -> dict:
        """Frame ``i`` with DeePMD-kit's field names; arrays decoded, other values as msgpack gave them."""
        key = self.key(i)
        raw = self.txn.get(key.encode())
        if raw is None:
            raise ValueError(f"{self.db}: frame {key} is missing (__metadata__ says nframes = {self.nframes})")
        out = {}
        for name, value in self._unpack(raw, f"frame {key}").items():
            if name in IGNORED:
                continue
            value = self._decode(value, key, name)
            name = FIELDS.get(name, name)
            name = "find_atom_" + name[12:] if name.startswith("find_atomic_") else name
            out["atom_" + name[7:] if name.startswith("atomic_") else name] = value
        return out

    def _decode(self, value, key: str, name: str):
        if not isinstance(value, dict):
            return value
        get = {k.decode() if isinstance(k, bytes) else k: v for k, v in value.items()}.get
        if get("type") is None or get("data") is None:
            return value
        where = f"{self.db}, frame {key}, field {name}"
        try:
            dtype = np.dtype(get("type").decode() if isinstance(get("type"), bytes) else get("type"))
            data = get("data")
            if dtype.hasobject or not isinstance(data, bytes):
                raise TypeError(f"type {get('type')!r} with data of {type(data).__name__}")
            shape = get("shape")
            return np.frombuffer(data, dtype=dtype).reshape(
                (len(data) // dtype.itemsize,) if shape is None else tuple(shape)).copy()
        except (TypeError, ValueError) as e:
            raise ValueError(f"{where}: not an array encoded as {{type, shape, data}} ({e})") from None


def _array(frame: dict, name: str, where: str):
    """Field ``name`` of a decoded frame as a numpy array; None when the frame lacks it."""
    value = frame.get(name)
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return np.asarray(value, dtype=np.float64)
    if not isinstance(value, np.ndarray):
        raise ValueError(f"{where}, field {_DB_NAME.get(name, name)}: a msgpack {type(value).__name__}; expected an "
                         "array encoded as {type, shape, data} or a number")
    return value


def _available(frame: dict, name: str, where: str) -> bool:
    """The frame carries label ``name`` and no ``find_<name>`` = 0 (DeePMD-kit's rule)."""
    if frame.get(name) is None:
        return False
    flag = _array(frame, f"find_{name}", where)
    return flag is None or (flag.size == 1 and float(flag.reshape(())) != 0.0)


def _atom_types(frame: dict, where: str) -> np.ndarray:
    atype = _array(frame, "atype", where)
    if atype is None:
        raise ValueError(f"{where}: no atom_types field (one integer type per atom)")
    if atype.dtype.kind not in "iu" or atype.size == 0:
        raise ValueError(f"{where}, field atom_types: dtype {atype.dtype}, shape {atype.shape}; "
                         "expected one integer type per atom")
    return atype.reshape(-1).astype(np.int64)


def index(db: str) -> dict:
    """{"names": the database's type_map or None, "groups": [{"types": raw atom types, "pbc": bool,
    "labels": tuple, "frames": [frame numbers]}]} in the order of each group's first frame."""
    st = os.stat(os.path.join(db, "data.mdb")) if os.path.isfile(os.path.join(db, "data.mdb")) else None
    tag = (os.path.realpath(db), None if st is None else (st.st_mtime_ns, st.st_size))
    if tag in _INDEX:
        return _INDEX[tag]
    groups = {}
    with _Database(db) as d:
        for i in range(d.nframes):
            frame, where = d.frame(i), f"{db}, frame {d.key(i)}"
            types = _atom_types(frame, where)
            pbc = frame.get("box") is not None
            labels = tuple(k for k in TRACKED if _available(frame, k, where))
            group = groups.setdefault((types.tobytes(), pbc, labels),
                                      {"types": types, "pbc": pbc, "labels": labels, "frames": []})
            group["frames"].append(i)
        out = {"names": d.names, "groups": list(groups.values())}
    _INDEX[tag] = out
    return out


def expand(path: str) -> list[str]:
    """The systems of database ``path`` (all its groups), or ``path`` itself when it names one
    group (``db#k``: module docstring)."""
    db, k = split(path)
    n = len(index(db)["groups"])
    if k is not None:
        if k >= n:
            raise ValueError(f"{path}: the database has {n} group(s) of frames, numbered 0 to {n - 1}")
        return [path]
    return [db] if n == 1 else [f"{db}#{k}" for k in range(n)]


def read(path: str, type_map: list[str]) -> dict:
    """One group of frames of a database (``db`` or ``db#k``: module docstring) as float64 arrays of
    finite numbers: {"db", "keys": frame keys, "types": the database's atom types, "names": its
    type_map or None, "coord": nf x natoms x 3, "box": nf x 9 or None, "labels": {label: nf x
    width} for the labels the frames carry}; ``type_map`` (the model's) checks the type indices."""
    db, k = split(path)
    ix = index(db)
    groups = ix["groups"]
    if k is None and len(groups) > 1:
        raise ValueError(f"{db}: its frames form {len(groups)} systems (different atom types, cells or labels); "
                         f"name one as {db}#0 ... {db}#{len(groups) - 1}, or give the database to `systems`")
    if k is not None and k >= len(groups):
        raise ValueError(f"{path}: the database has {len(groups)} group(s) of frames, numbered 0 to "
                         f"{len(groups) - 1}")
    group = groups[k or 0]
    types, natoms = group["types"], len(group["types"])
    _check_types(types, ix["names"], type_map, db)
    widths = {"coord": natoms * 3, "box": 9, "energy": 1, "force": natoms * 3, "virial": 9}
    names = ["coord"] + ["box"] * group["pbc"] + [n for n in group["labels"] if n in LABELS]
    values, keys, other = {n: [] for n in names}, [], {n: [] for n in OTHER}
    with _Database(db) as d:
        for i in group["frames"]:
            frame, key = d.frame(i), d.key(i)
            keys.append(key)
            for n in names:
                values[n].append(_checked(frame, n, f"{db}, frame {key}", widths[n]))
            for n in OTHER:
                arr = _array(frame, n, f"{db}, frame {key}") if _available(frame, n, f"{db}, frame {key}") else None
                other[n].append(None if arr is None else _checked(frame, n, f"{db}, frame {key}", arr.size))
    out = {n: np.stack(v) for n, v in values.items()}
    return {"db": db, "keys": keys, "types": types, "names": ix["names"], "coord": out.pop("coord").reshape(
        len(keys), natoms, 3), "box": out.pop("box", None), "labels": out,
        "other": {n: v for n, v in other.items() if any(a is not None for a in v)}}


def stacked(sys, name: str, width: int, default=None) -> tuple[np.ndarray, np.ndarray]:
    """(nf x width values, nf found) of field ``name`` (one of ``OTHER``) over the frames of ``sys``
    (a System read from a database: its ``keys`` and ``frame_fields``); a frame without the field
    takes ``default`` (width values, or one for all), or is a ValueError naming it when None."""
    frames = sys.frame_fields.get(name) or [None] * sys.nframes
    out, found = np.empty((sys.nframes, width)), np.zeros(sys.nframes, bool)
    for j, arr in enumerate(frames):
        where = f"{sys.path.partition('#')[0]}, frame {sys.keys[j]}"
        if arr is None and default is None:
            raise ValueError(f"{where}: no {name} field")
        if arr is not None and arr.size != width:
            raise ValueError(f"{where}, field {name}: {arr.size} values; expected {width}")
        out[j], found[j] = (default, False) if arr is None else (arr, True)
    return out, found


def _checked(frame: dict, name: str, where: str, width: int) -> np.ndarray:
    """Field ``name`` of a frame as ``width`` float64 values: present, of that size, finite numbers."""
    shown = _DB_NAME.get(name, name)
    arr = _array(frame, name, where)
    if arr is None:
        raise ValueError(f"{where}: no {shown} field")
    if arr.size != width:
        raise ValueError(f"{where}, field {shown}: shape {list(arr.shape)} ({arr.size} values); expected {width} "
                         f"values ({_SHAPES.get(shown, '')})")
    if arr.dtype.kind not in "fiu":  # booleans would become 0/1, complex numbers lose their imaginary part
        raise ValueError(f"{where}, field {shown}: dtype {arr.dtype}; expected real numbers (float or int)")
    arr = arr.reshape(width).astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise ValueError(f"{where}, field {shown}: {bad.size} NaN/inf values; remove or fix the frame")
    return arr


def _check_types(raw: np.ndarray, names, type_map: list[str], db: str) -> None:
    """Type indices the database's type_map (or the model's, without one) can name."""
    if raw.min() < 0:
        raise ValueError(f"{db}: atom type {raw.min()} in atom_types; types are indices >= 0 "
                         "(DeePMD-kit's virtual atoms, type -1, are not supported)")
    known = type_map if names is None else names
    if raw.max() >= len(known):
        whose = "the model's type_map" if names is None else "the database's __metadata__ type_map"
        raise ValueError(f"{db}: atom type {raw.max()} in atom_types but {whose} {known} has only {len(known)} "
                         "types")
