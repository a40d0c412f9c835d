"""`dpp convert`: DeePMD-kit .dp <-> our checkpoint <-> .dp keeps every weight bit for bit, and
the frozen model made from a .dp file reproduces DeePMD-kit's outputs."""
import pathlib

import numpy as np
import pytest

FIX = pathlib.Path(__file__).parent / "fixtures" / "deepmd-kit"


def test_dp_checkpoint_dp_round_trip(tmp_path):
    from deepmd_paddle.cli import main
    from deepmd_paddle.io import load_dp

    src = FIX / "water_se_e2_a_one_side.dp"
    assert main(["convert", str(src), str(tmp_path / "m.ckpt")]) == 0
    assert main(["convert", str(tmp_path / "m.ckpt-0"), str(tmp_path / "back.dp")]) == 0
    a, b = load_dp(str(src)).state_dict(), load_dp(str(tmp_path / "back.dp")).state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k].numpy(), b[k].numpy()), k


def test_dp_to_frozen_matches_deepmd_kit(tmp_path):
    from deepmd_paddle.cli import main
    from deepmd_paddle.infer import DeepPot

    assert main(["convert", str(FIX / "water_se_e2_a_one_side.dp"), str(tmp_path / "frozen")]) == 0
    ref = np.load(FIX / "water_se_e2_a_one_side_ref.npz")
    e, f, v = DeepPot(str(tmp_path / "frozen")).eval(ref["coord"], ref["cell"], ref["atype"])
    for got, key in ((e, "energy"), (f, "force"), (v, "virial")):
        np.testing.assert_allclose(got, ref[key], rtol=1e-10, atol=1e-10 * np.abs(ref[key]).max())


def test_convert_unknown_input(tmp_path):
    from deepmd_paddle.cli import main

    (tmp_path / "x.txt").write_text("not a model")
    assert main(["convert", str(tmp_path / "x.txt"), str(tmp_path / "y.dp")]) == 1
