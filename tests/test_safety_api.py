"""DeepPot.eval misuse gives named errors (never a silent reinterpretation), and the command line
prints what concerns the user only: no framework noise, each log line once."""
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, make_small_model, random_system
from deepmd_paddle.infer import DeepPot


@pytest.fixture(scope="module")
def dp():
    return DeepPot(make_small_model())


@pytest.fixture(scope="module")
def frames():
    return random_system(8, 3, seed=4)


def test_accepted_forms_agree(dp, frames):
    coord, atype, cell = frames
    e0, f0, _ = dp.eval(coord, cell, atype[0])
    names = np.array(["O", "H"])[atype[0]]
    for c, b, t in [(coord.reshape(3, -1), cell.reshape(3, 3, 3), atype), (coord, cell, names)]:
        e, f, _ = dp.eval(c, b, t)
        np.testing.assert_allclose(e, e0, rtol=1e-12)
    e1, _, _ = dp.eval(coord[0], cell[0].reshape(3, 3), atype[0])  # one frame without the frame axis
    e2, _, _ = dp.eval(coord[0].reshape(-1), cell[0], atype[0])
    np.testing.assert_allclose([e1[0, 0], e2[0, 0]], e0[0, 0], rtol=1e-12)


def test_type_count_that_does_not_divide_the_frame(dp, frames):
    coord, atype, cell = frames
    # half the types: DeePMD-kit's reshape would read each frame as two frames of 4 atoms
    with pytest.raises(ValueError, match=r"coords of shape \[3, 8, 3\] do not hold whole frames of 4 atoms"):
        dp.eval(coord, cell, atype[0, :4])
    with pytest.raises(ValueError, match=r"coords of shape \[48\] do not hold whole frames of 4 atoms"):
        dp.eval(coord[:2].reshape(-1), None, atype[0, :4])
    with pytest.raises(ValueError, match=r"coords of shape \[1, 24\] do not hold whole frames of 4 atoms"):
        dp.eval(coord[:1].reshape(1, -1), cell[:1], atype[0, :4])
    with pytest.raises(ValueError, match="atom_types has 2 frames but coords have 3"):
        dp.eval(coord, cell, atype[:2])


def test_unknown_keywords_and_bad_flags(dp, frames):
    coord, atype, cell = frames
    with pytest.raises(TypeError, match=r"unknown keyword argument\(s\) \['atomc'\]; allowed: .*atomic"):
        dp.eval(coord, cell, atype[0], atomc=True)
    with pytest.raises(TypeError, match=r"unknown keyword argument\(s\) \['efield'\]"):
        dp.eval_descriptor(coord, cell, atype[0], efield=np.zeros(3))
    with pytest.raises(TypeError, match="atomic must be True or False, got 'yes'"):
        dp.eval(coord, cell, atype[0], atomic="yes")


def test_mixed_frame_sizes_and_non_numbers(dp, frames):
    coord, atype, cell = frames
    with pytest.raises(ValueError, match="coords: frames of different sizes.*call eval once per system"):
        dp.eval([coord[0], coord[1, :5]], cell[:2], atype[0])
    with pytest.raises(ValueError, match="coords must be real numbers, got dtype complex128"):
        dp.eval(coord + 0j, cell, atype[0])
    with pytest.raises(ValueError, match="cells must be real numbers, got dtype <U"):
        dp.eval(coord, cell.astype(str), atype[0])


def test_cell_lengths_are_not_cells(dp, frames):
    coord, atype, cell = frames
    lengths = np.tile([6.5, 7.0, 7.5], (3, 1))
    with pytest.raises(ValueError, match=r"cells of shape \[2, 3\] look like cell lengths; give the cell vectors, "
                                         r"\[2, 9\]"):
        dp.eval(coord[:2], lengths[:2], atype[0])
    with pytest.raises(ValueError, match=r"cells of shape \[3\] look like cell lengths"):
        dp.eval(coord[:1], lengths[0], atype[0])
    # [3, 3] for three frames reads as one 3 x 3 cell: with lengths in its rows it has no volume
    with pytest.raises(ValueError, match=r"cells of shape \[3, 3\] with 3 frames .* for the cell lengths of each "
                                         r"frame give \[3, 9\]"):
        dp.eval(coord, lengths, atype[0])
    with pytest.raises(ValueError, match=r"cells must have shape \[nframes, 9\] = \[3, 9\]"):
        dp.eval(coord, cell[:2], atype[0])


def test_framework_noise_silenced_real_warnings_kept():
    code = ("import warnings, deepmd_paddle\n"
            "warnings.warn('No ccache found. Please be aware ...', UserWarning)\n"
            "warnings.warn(\"Tensor do not have 'place' interface for pir graph mode\", UserWarning)\n"
            "warnings.warn('neighbours beyond sel were dropped', UserWarning)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert "neighbours beyond sel were dropped" in proc.stderr
    assert "ccache" not in proc.stderr and "place" not in proc.stderr


def test_command_line_prints_no_framework_noise(tmp_path):
    coord, atype, cell = random_system(6, 2)
    s = tmp_path / "sys" / "set.000"
    os.makedirs(s)
    np.save(s / "coord.npy", coord.reshape(2, -1))
    np.save(s / "box.npy", cell)
    np.savetxt(tmp_path / "sys" / "type.raw", atype[0], fmt="%d")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("GLOG_minloglevel", None)
    proc = subprocess.run([sys.executable, "-m", "deepmd_paddle", "neighbor-stat", "-s", str(tmp_path / "sys"),
                           "-r", "3", "-t", "O", "H"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "max_nbor_size" in proc.stdout
    for noise in ("ccache", "UserWarning", "warnings.warn", "using custom operator only"):
        assert noise not in proc.stderr, proc.stderr
    assert not [ln for ln in proc.stderr.splitlines() if ln[:1] in "WI" and ln[1:5].isdigit()]  # no glog lines
