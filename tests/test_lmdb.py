"""LMDB databases (DeePMD-kit's layout) as data systems: the frames, types and labels DeePMD-kit's
reader gives, its batches, its example input training here, and named errors for bad databases.

The reference comes from DeePMD-kit 3.2 itself: tests/fixtures/deepmd_lmdb/make.py."""
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, random_system
from deepmd_paddle import config
from deepmd_paddle.cli import main
from deepmd_paddle.data import atom_data, params
from deepmd_paddle.data.batch import batch_sizes
from deepmd_paddle.data.demo import write_system
from deepmd_paddle.data.system import DataError, expand_systems, load_system

lmdb = pytest.importorskip("lmdb")
msgpack = pytest.importorskip("msgpack")

FIX = pathlib.Path(__file__).parent / "fixtures" / "deepmd_lmdb"
DB = str(FIX / "mixed.lmdb")
REF = dict(np.load(FIX / "reference.npz"))
EXAMPLE = REPO / "tests" / "fixtures" / "deepmd_examples" / "lmdb_input.json"


def enc(a, dtype=None):
    a = np.asarray(a) if dtype is None else np.asarray(a, dtype=dtype)
    return {"type": str(a.dtype), "shape": list(a.shape), "data": a.tobytes()}


def write_lmdb(path, frames, type_map=("O", "H"), meta=None):
    """A database in DeePMD-kit's layout; ``frames``: dicts of its field names (arrays get encoded)."""
    env = lmdb.open(str(path), map_size=1 << 26)
    with env.begin(write=True) as txn:
        if meta is not False:
            txn.put(b"__metadata__", msgpack.packb(meta or {"nframes": len(frames), "frame_idx_fmt": "012d",
                                                            "type_map": list(type_map)}, use_bin_type=True))
        for i, f in enumerate(frames):
            f = {k: enc(v) if isinstance(v, np.ndarray) else v for k, v in f.items()}
            txn.put(format(i, "012d").encode(), msgpack.packb(f, use_bin_type=True))
    env.close()
    return str(path)


def water_frames(nframes, natoms=12, seed=0):
    """Random frames (O H H ...) with labels: coord nf x natoms x 3, atype natoms, box nf x 9, ..."""
    coord, atype, box = random_system(natoms=natoms, nframes=nframes, seed=seed)
    rng = np.random.default_rng(seed + 1)
    return {"coord": coord, "atype": atype[0], "box": box, "energy": rng.normal(-10.0, 1.0, nframes),
            "force": rng.normal(size=(nframes, natoms, 3))}


def to_lmdb(path, d):
    return write_lmdb(path, [{"atom_types": d["atype"].astype(np.int32), "coords": d["coord"][i],
                              "cells": d["box"][i].reshape(3, 3), "energies": d["energy"][i],
                              "forces": d["force"][i]} for i in range(len(d["energy"]))])


# ----------------------------------------------------------------------------- DeePMD-kit's reading
def test_frames_equal_deepmd_kits_reader():
    """Every frame, with the database's type_map ["H", "O"] turned into the model's ["O", "H"]."""
    paths = expand_systems(DB, str(FIX), None, "systems")
    assert paths == [f"{DB}#{k}" for k in range(4)]
    seen = []
    for p in paths:
        s = load_system(p, ["O", "H"])
        for j, key in enumerate(s.keys):
            i = int(key)
            seen.append(i)
            np.testing.assert_array_equal(s.coord[j], REF[f"{i}/coord"])
            np.testing.assert_array_equal(s.atype, REF[f"{i}/atype"])
            assert (s.box is not None) == bool(REF[f"{i}/has_box"])
            if s.box is not None:
                np.testing.assert_array_equal(s.box[j], REF[f"{i}/box"])
            for name in ("energy", "force", "virial"):
                assert float(s.found[name][j]) == REF[f"{i}/find_{name}"], (i, name)
                np.testing.assert_array_equal(s.labels[name][j], REF[f"{i}/{name}"].reshape(s.labels[name][j].shape))
    assert sorted(seen) == list(range(7))
    assert load_system(paths[0], ["O", "H"]).atype.tolist() == [0, 1, 1, 0, 1, 1]  # H O remapped: not raw


def test_frame_and_atom_parameters_and_atomic_energies_equal_deepmd_kits():
    """fparam, aparam (numb_fparam 2, numb_aparam 1) and atomic_ener (the ae term's atom_ener) of
    the six-atom frames; the three-atom frames have no fparam: refused as DeePMD-kit does (it
    requires fparam without default_fparam), or filled with default_fparam."""
    systems = [load_system(p, ["O", "H"]) for p in expand_systems(DB, str(FIX), None, "systems")]
    checked = 0
    for s in systems:
        if s.natoms == 3:
            with pytest.raises(DataError, match=r"mixed.lmdb, frame 000000000004: no fparam field: "
                                                r"model/fitting_net/numb_fparam = 2 asks for 2 fparam value\(s\)"):
                params.attach([s], 2, 0)
            params.attach([s], 2, 0, default_fparam=[0.5, -1.0])
            np.testing.assert_array_equal(s.params["fparam"], [[0.5, -1.0]] * 2)
            continue
        params.attach([s], 2, 1)
        atom_data.attach(s, ["atom_ener"])
        for j, key in enumerate(s.keys):
            i = int(key)
            np.testing.assert_array_equal(s.params["fparam"][j], REF[f"{i}/fparam"])
            np.testing.assert_array_equal(s.params["aparam"][j], REF[f"{i}/aparam"])
            np.testing.assert_array_equal(s.labels["atom_ener"][j], REF[f"{i}/atom_ener"].ravel())
            assert float(s.found["atom_ener"][j]) == REF[f"{i}/find_atom_ener"]
            checked += 1
    assert checked == 5


def test_systems_are_deepmd_kits_batches():
    """DeePMD-kit batches frames of one atom count and one set of labels, "auto" = ceil(32 / nloc):
    each of its batches of a pass is one of our systems, with our batch size its."""
    systems = [load_system(p, ["O", "H"]) for p in expand_systems(DB, str(FIX), None, "systems")]
    ours = {tuple(int(k) for k in s.keys): s for s in systems}
    theirs = [tuple(REF[k].tolist()) for k in sorted(k for k in REF if k.startswith("batches/"))]
    assert sorted(theirs) == sorted(ours)
    for s in ours.values():
        assert batch_sizes("auto", [s.natoms]) == [int(REF[f"batch_size/{s.natoms}"])]
    assert {s.natoms for s in systems} == {6, 3}


def test_one_group_is_the_database_itself(tmp_path):
    d = water_frames(3)
    db = to_lmdb(tmp_path / "one.lmdb", d)
    assert expand_systems(["one.lmdb"], str(tmp_path), None, "k") == [db]
    assert expand_systems("*.lmdb", str(tmp_path), None, "k") == [db]  # globs, as other systems
    s = load_system(db, ["O", "H"])
    np.testing.assert_array_equal(s.coord, d["coord"])
    np.testing.assert_array_equal(s.labels["force"], d["force"])
    assert s.where(2) == f"{db}, frame 000000000002"


def test_a_database_written_by_dpdata_equals_its_npy_system(tmp_path):
    dpdata = pytest.importorskip("dpdata")
    if "deepmd/lmdb" not in dpdata.format.Format.get_formats():
        pytest.skip("this dpdata has no deepmd/lmdb format")
    d = water_frames(4, seed=3)
    write_system(str(tmp_path / "npy"), {"coord": d["coord"].reshape(4, -1), "box": d["box"], "energy": d["energy"],
                                         "force": d["force"].reshape(4, -1)}, d["atype"], ["O", "H"])
    dpdata.LabeledSystem(str(tmp_path / "npy"), fmt="deepmd/npy").to("deepmd/lmdb", str(tmp_path / "w.lmdb"))
    a, b = load_system(str(tmp_path / "npy"), ["H", "O"]), load_system(str(tmp_path / "w.lmdb"), ["H", "O"])
    np.testing.assert_array_equal(a.atype, b.atype)
    for x, y in ((a.coord, b.coord), (a.box, b.box), *((a.labels[k], b.labels[k]) for k in a.labels)):
        np.testing.assert_array_equal(x, y)


# ----------------------------------------------------------------------------- DeePMD-kit's example
def test_deepmd_kit_example_trains_and_equals_npy(tmp_path):
    """examples/lmdb_downsample_data/input_lmdb.json, numb_steps lowered, on small databases: the
    learning curve is the one of the same frames as npy systems, number for number."""
    raw = json.loads(EXAMPLE.read_text())
    raw["training"]["numb_steps"] = 2
    curves = []
    for kind in ("lmdb", "npy"):
        root = tmp_path / kind
        root.mkdir()
        for name, seed in (("water_training.lmdb", 5), ("water_validation.lmdb", 6)):
            d = water_frames(4, seed=seed)
            if kind == "lmdb":
                to_lmdb(root / name, d)
            else:
                write_system(str(root / name), {"coord": d["coord"].reshape(4, -1), "box": d["box"],
                                                "energy": d["energy"], "force": d["force"].reshape(4, -1)},
                             d["atype"], ["O", "H"])
        (root / "input.json").write_text(json.dumps(raw))
        assert main(["train", str(root / "input.json"), "--outdir", str(root / "out")]) == 0
        cfg = json.loads((root / "out" / "out.json").read_text())
        assert cfg["training"]["training_data"]["systems"] == [str(root / "water_training.lmdb")]
        curves.append((root / "out" / "lcurve.out").read_text())
    lines = [ln for ln in curves[0].splitlines() if not ln.startswith("#")]
    values = np.array([float(x) for x in lines[0].split()])
    assert len(lines) == 1 and np.isfinite(values).all() and values[1] > 0
    assert curves[0] == curves[1]


def test_batch_size_auto_per_group(tmp_path):
    """Two atom counts in one database: two systems, "auto" sizes each (ceil(32 / natoms))."""
    a, b = water_frames(2, natoms=12, seed=1), water_frames(3, natoms=9, seed=2)
    frames = [{"atom_types": d["atype"].astype(np.int32), "coords": d["coord"][i], "cells": d["box"][i],
               "energies": d["energy"][i], "forces": d["force"][i]} for d in (a, b, a) for i in range(2)]
    db = write_lmdb(tmp_path / "two.lmdb", frames)
    raw = json.loads(EXAMPLE.read_text())
    raw["training"]["training_data"]["systems"] = "two.lmdb"
    raw["training"]["validation_data"] = None
    cfg = config.normalize(raw, base_dir=str(tmp_path))
    assert cfg["training"]["training_data"]["systems"] == [f"{db}#0", f"{db}#1"]
    systems = [load_system(p, ["O", "H"]) for p in cfg["training"]["training_data"]["systems"]]
    assert [(s.natoms, s.keys) for s in systems] == [(12, ["000000000000", "000000000001", "000000000004",
                                                           "000000000005"]), (9, ["000000000002", "000000000003"])]
    assert batch_sizes("auto", [s.natoms for s in systems]) == [3, 4]


# ----------------------------------------------------------------------------- bad databases
def _bad(tmp_path, frames=None, **kw):
    d = water_frames(2)
    good = [{"atom_types": d["atype"].astype(np.int32), "coords": d["coord"][i], "cells": d["box"][i],
             "energies": d["energy"][i], "forces": d["force"][i]} for i in range(2)]
    return write_lmdb(tmp_path / "bad.lmdb", frames(good) if frames else good, **kw)


@pytest.mark.parametrize("make, message", [
    (lambda t: os.makedirs(t / "bad.lmdb"), r"bad.lmdb: not an LMDB database \(no data.mdb in the folder\)"),
    (lambda t: (os.makedirs(t / "bad.lmdb"), (t / "bad.lmdb" / "data.mdb").write_bytes(b"x" * 8192)),
     r"bad.lmdb: not a readable LMDB database"),
    (lambda t: _bad(t, meta=False), r"bad.lmdb: no __metadata__ entry"),
    (lambda t: _bad(t, meta={"nframes": 3}), r"bad.lmdb: frame 000000000002 is missing"),
    (lambda t: _bad(t, meta={"nframes": 2, "frame_idx_fmt": "s"}), r"frame_idx_fmt = 's' is not an integer format"),
    (lambda t: _bad(t, lambda f: f[:1] + [{**f[1], "forces": f[1]["forces"][:5]}]),
     r"bad.lmdb, frame 000000000001, field forces: shape \[5, 3\] \(15 values\); expected 36 values"),
    (lambda t: _bad(t, lambda f: [{**f[0], "coords": np.full((12, 3), np.nan)}] + f[1:]),
     r"bad.lmdb, frame 000000000000, field coords: 36 NaN/inf values"),
    (lambda t: _bad(t, lambda f: [{**f[0], "energies": "high"}] + f[1:]),
     r"bad.lmdb, frame 000000000000, field energies: a msgpack str; expected an array"),
    (lambda t: _bad(t, lambda f: [{**f[0], "forces": {"type": "float64", "shape": [7], "data": b"\0" * 8}}]),
     r"frame 000000000000, field forces: not an array encoded as \{type, shape, data\}"),
    (lambda t: _bad(t, lambda f: [{**f[0], "cells": np.zeros((3, 3))}] + f[1:]),
     r"box of .*bad.lmdb, frame 000000000000 has zero volume"),
    (lambda t: _bad(t, lambda f: [{k: v for k, v in f[0].items() if k != "atom_types"}]),
     r"bad.lmdb, frame 000000000000: no atom_types field"),
    (lambda t: _bad(t, type_map=["O", "C"]), r"element\(s\) \['C'\] are not in the model's type_map"),
    (lambda t: _bad(t, lambda f: [{**f[0], "atom_types": f[0]["atom_types"] + 2}]),
     r"atom type 3 in atom_types but the database's __metadata__ type_map \['O', 'H'\] has only 2 types"),
])
def test_bad_database_is_a_named_error(tmp_path, make, message):
    make(tmp_path)
    with pytest.raises(DataError, match=message):
        for p in expand_systems("bad.lmdb", str(tmp_path), None, "training/training_data/systems"):
            load_system(p, ["O", "H"])


def test_bad_database_in_dpp_train_is_one_line(tmp_path, capsys):
    _bad(tmp_path, lambda f: f[:1] + [{**f[1], "virials": np.zeros(4)}])
    raw = json.loads(EXAMPLE.read_text())
    raw["training"]["training_data"]["systems"] = "bad.lmdb"
    raw["training"]["validation_data"] = None
    (tmp_path / "input.json").write_text(json.dumps(raw))
    assert main(["train", str(tmp_path / "input.json"), "--outdir", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.lmdb, frame 000000000001, field virials: shape [4]" in err, err


def test_groups_beyond_the_database_are_named(tmp_path):
    db = _bad(tmp_path)
    with pytest.raises(DataError, match=r"bad.lmdb#3: the database has 1 group\(s\) of frames, numbered 0 to 0"):
        expand_systems("bad.lmdb#3", str(tmp_path), None, "systems")
    with pytest.raises(DataError, match="names the number of a group"):
        load_system(db + "#x", ["O", "H"])
    with pytest.raises(DataError, match=r"form 4 systems .* name one as .*#0 \.\.\. .*#3"):
        load_system(DB, ["O", "H"])


def test_missing_packages_are_named(tmp_path, monkeypatch):
    db = _bad(tmp_path)
    from deepmd_paddle.data import lmdb as ours

    ours._INDEX.clear()
    monkeypatch.setitem(sys.modules, "msgpack", None)  # import msgpack now raises ImportError
    with pytest.raises(DataError, match=r"needs the Python packages lmdb and msgpack \(pip install lmdb msgpack\)"):
        load_system(db, ["O", "H"])


def test_npy_systems_do_not_import_lmdb(tmp_path):
    d = water_frames(1)
    write_system(str(tmp_path / "npy"), {"coord": d["coord"].reshape(1, -1), "box": d["box"]}, d["atype"], ["O", "H"])
    code = ("import sys; from deepmd_paddle.data.system import expand_systems, load_system; "
            f"load_system(expand_systems({str(tmp_path)!r}, '.', None, 'k')[0], ['O', 'H']); "
            "print(sorted(m for m in ('lmdb', 'msgpack') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.stdout.strip() == "[]", out.stderr
