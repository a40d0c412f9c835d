"""Data checked once when loaded, every frame, named by system, file and frame; absurd boxes
refused before the neighbour search (quickly), and sel "auto" that would explode."""
import os
import time

import numpy as np
import paddle
import pytest

from conftest import make_small_model, random_system, to_tensors
from deepmd_paddle.kernels import cpp as ops
from deepmd_paddle.kernels.build import load_library
from deepmd_paddle.kernels.checks import check_values
from deepmd_paddle.data.stats import AUTO_SEL_MAX, check_system_frames, neighbor_stat, resolve_sel
from deepmd_paddle.data.system import DataError, load_system

TYPE_MAP = ["O", "H"]


def write_system(path, sets=((0, 4), (1, 3)), natoms=12, scale=1.0):
    """A DeePMD npy system with one set per (seed, nframes), labels included; coordinates and boxes
    multiplied by ``scale`` (0.1: Angstrom data written as if in nm)."""
    for i, (seed, nf) in enumerate(sets):
        coord, atype, cell = random_system(natoms, nf, seed=seed)
        s = path / f"set.{i:03d}"
        os.makedirs(s, exist_ok=True)
        np.save(s / "coord.npy", coord.reshape(nf, -1) * scale)
        np.save(s / "box.npy", cell * scale)
        np.save(s / "energy.npy", np.linspace(-1, 1, nf))
        np.save(s / "force.npy", np.zeros((nf, natoms * 3)))
    np.savetxt(path / "type.raw", atype[0], fmt="%d")
    return path


def test_good_system_loads_with_its_sources(tmp_path):
    s = load_system(str(write_system(tmp_path / "sys")), TYPE_MAP)
    assert s.nframes == 7 and s.sources == [(str(tmp_path / "sys" / f"set.00{i}"), n) for i, n in ((0, 4), (1, 3))]
    assert s.where(5) == f"{tmp_path / 'sys' / 'set.001' / 'box.npy'}, frame 1"


@pytest.mark.parametrize("name, value, message", [
    ("energy", lambda a: a > 0, r"energy.npy: dtype bool \(booleans\); expected real numbers"),
    ("force", lambda a: a + 1j, r"force.npy: dtype complex128 \(complex numbers\)"),
    ("energy", lambda a: a.astype(str), r"energy.npy: dtype <U\d+ \(text\)"),
])
def test_labels_must_be_real_numbers(tmp_path, name, value, message):
    sys = write_system(tmp_path / "sys")
    f = sys / "set.001" / f"{name}.npy"
    np.save(f, value(np.load(f)))
    with pytest.raises(DataError, match=rf"{tmp_path}/sys/set.001/{message}"):
        load_system(str(sys), TYPE_MAP)


def test_unreadable_and_empty_sets_are_named(tmp_path):
    sys = write_system(tmp_path / "sys")
    for name in ("coord", "box", "energy", "force"):
        f = sys / "set.001" / f"{name}.npy"
        np.save(f, np.load(f)[:0])
    with pytest.raises(DataError, match=r"set.001/coord.npy: no frames; remove the empty set"):
        load_system(str(sys), TYPE_MAP)
    sys2 = write_system(tmp_path / "sys2")
    raw = (sys2 / "set.000" / "coord.npy").read_bytes()
    (sys2 / "set.000" / "coord.npy").write_bytes(raw[:100])
    with pytest.raises(DataError, match=r"sys2/set.000/coord.npy: not a readable .npy array"):
        load_system(str(sys2), TYPE_MAP)
    (sys2 / "type.raw").write_text("0 1 x\n")
    with pytest.raises(DataError, match=r"sys2/type.raw: expected one integer atom type per atom"):
        load_system(str(sys2), TYPE_MAP)


def test_zero_volume_box_found_at_load_with_file_and_frame(tmp_path):
    sys = write_system(tmp_path / "sys")
    box = np.load(sys / "set.001" / "box.npy")
    box[2, 6:] = box[2, :3] + box[2, 3:6]  # c = a + b: flat
    np.save(sys / "set.001" / "box.npy", box)
    with pytest.raises(DataError, match=rf"box of {tmp_path}/sys/set.001/box.npy, frame 2 has zero volume"):
        load_system(str(sys), TYPE_MAP)


@pytest.mark.parametrize("scale", [0.1, 0.12 / 6.5])  # a box in nm; a 0.12 A box (hung the search)
def test_absurd_density_refused_quickly_before_the_search(tmp_path, scale):
    s = load_system(str(write_system(tmp_path / "sys", scale=scale)), TYPE_MAP)
    t0 = time.perf_counter()
    with pytest.raises(DataError, match=rf"box of {tmp_path}/sys/set.000/box.npy, frame \d holds 12 atoms in .* "
                                        r"neighbours per atom within rcut = 6.0 A .*in Angstrom\?"):
        check_system_frames(s, 6.0, 2)
    with pytest.raises(DataError, match="in Angstrom"):  # dpp neighbor-stat and sel "auto" go through it too
        neighbor_stat([s], 6.0, TYPE_MAP)
    assert time.perf_counter() - t0 < 5


def test_sel_auto_refuses_suspect_neighbour_counts(tmp_path):
    # 4.6x compressed: ~10x denser than matter, under the search's bound, over sel auto's
    s = load_system(str(write_system(tmp_path / "sys", natoms=24, sets=((0, 2),), scale=1 / 4.6)), TYPE_MAP)
    with pytest.raises(DataError, match=rf"sel 'auto': the data have up to \[\d+, \d+\] neighbours .* 'auto' accepts "
                                        rf"{AUTO_SEL_MAX}.*give sel as a list"):
        resolve_sel("auto", [s], 6.0, TYPE_MAP)
    assert resolve_sel([40, 80], [s], 6.0, TYPE_MAP) == [40, 80]  # an explicit sel is the user's choice


def test_neighbour_bound_of_the_operator_inputs():
    coord, atype, cell = random_system(12, 1)
    check_values(coord, cell, atype, 2, 6.0)  # ordinary matter passes
    with pytest.raises(ValueError, match=r"box of frame 0 holds 12 atoms"):
        check_values(coord * 0.05, cell * 0.05, atype, 2, 6.0)
    with pytest.raises(ValueError, match=r"box of set 7 holds"):
        check_values(coord * 0.05, cell * 0.05, atype, 2, 6.0, where=lambda f: f"set {f + 7}")
    c, a, b = to_tensors(coord * 0.05, atype, cell * 0.05)
    with pytest.raises(ValueError, match=r"box of frame 0 holds 12 atoms .*at most 2e\+04"):
        make_small_model(use_op=None)(c, a, b)  # the model's path (rcut 3.5): the search is never entered
    if load_library() is not None:  # the operator's own entry point checks too
        c, a, b = to_tensors(coord * 0.05, atype, cell * 0.05)
        with pytest.raises(ValueError, match="neighbours per atom"):
            ops.neighbor_list(c, b, a.astype("int32"), 6.0, [10, 20])
    assert paddle.in_dynamic_mode()
