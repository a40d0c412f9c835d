"""Excluded type pairs (descriptor ``exclude_types``) and fixed isolated-atom energies (fitting
``atom_ener``) against DeePMD-kit itself.

Fixtures (``tests/fixtures/deepmd_types``, made by ``make.py`` there with DeePMD-kit 3.2.0 TF):
small water models trained by ``dp --tf train``, frozen to ``.pb`` and converted to ``.dp`` by
``dp convert-backend`` (not the type-embedding one: DeePMD-kit does not convert it), with DeePMD-kit
TensorFlow's ``DeepPot`` outputs. Every output (energy,
forces, virial, atomic energies and virials, descriptor, an open cluster, isolated atoms) must
agree to 1e-10 relative, from the ``.dp`` and from the ``.pb``, through ``DeepPot``, through
frozen programs, after a ``.dp`` round trip; compressed, within the tables' accuracy.
"""
import pathlib

import numpy as np
import pytest

from deepmd_paddle.infer import DeepPot
from deepmd_paddle.io.load import load_model
from deepmd_paddle.kernels.build import load_library

FIX = pathlib.Path(__file__).parent / "fixtures" / "deepmd_types"
CASES = ("excl_two_side", "excl_one_side", "atom_ener")
KEYS = ("energy", "force", "virial", "atom_energy", "atom_virial")
needs_op = pytest.mark.skipif(load_library() is None, reason="the C++ operators are not available")


def _close(a, b, rtol=1e-10):
    np.testing.assert_allclose(np.reshape(a, np.shape(b)), b, rtol=rtol, atol=rtol * np.abs(b).max())


def _check(dp: DeepPot, ref, rtol=1e-10):
    got = dict(zip(KEYS, dp.eval(ref["coord"], ref["cell"], ref["atype"], atomic=True)))
    for key in KEYS:
        _close(got[key], ref[key], rtol)
    e, f, v = dp.eval(ref["nopbc_coord"], None, ref["nopbc_atype"])
    for g, key in ((e, "nopbc_energy"), (f, "nopbc_force"), (v, "nopbc_virial")):
        _close(g, ref[key], rtol)
    return got


# (DeePMD-kit's type-embedding models: dp convert-backend refuses them, so the .pb only)
PB_ONLY = ("atom_ener_tebd", "excl_tebd")


@pytest.mark.parametrize("case,ext", [(c, e) for c in CASES for e in ("dp", "pb")] + [(c, "pb") for c in PB_ONLY])
def test_deeppot_parity(case, ext):
    ref = np.load(FIX / f"{case}_ref.npz")
    dp = DeepPot(str(FIX / f"{case}.{ext}"))
    _check(dp, ref)
    _close(dp.eval_descriptor(ref["coord"][:1], ref["cell"][:1], ref["atype"]), ref["descriptor"])
    iso = [dp.eval(np.zeros((1, 3)), None, np.array([t]))[0].item() for t in range(2)]
    _close(np.array(iso), ref["isolated_energy"])


def test_the_fixtures_hold_what_they_test():
    """The exclusions and fixed energies are in the models, and they change the numbers."""
    two = load_model(str(FIX / "excl_two_side.dp"))
    assert two.descriptor.exclude_types == [[0, 1], [1, 1]]
    ref = np.load(FIX / "excl_two_side_ref.npz")
    h = ref["atype"] == 1
    assert np.all(ref["descriptor"][0, h] == 0)  # a hydrogen sees nobody: D = 0
    assert load_model(str(FIX / "excl_one_side.pb")).descriptor.exclude_types == [[0, 1]]
    ae = load_model(str(FIX / "atom_ener.pb")).fitting
    assert ae.atom_ener == [-93.5, None] and ae.bias_atom_e.numpy()[0] == -93.5
    assert np.load(FIX / "atom_ener_ref.npz")["isolated_energy"][0] == -93.5
    assert load_model(str(FIX / "excl_tebd.pb")).descriptor.exclude_types == [[0, 1]]
    tebd = load_model(str(FIX / "atom_ener_tebd.pb"))
    assert tebd.fitting.mixed_types and tebd.fitting.atom_ener == [None, -13.5]
    assert np.load(FIX / "atom_ener_tebd_ref.npz")["isolated_energy"][1] == -13.5


@needs_op
@pytest.mark.parametrize("portable", [False, True])
@pytest.mark.parametrize("case", ["excl_one_side", "atom_ener"])
def test_frozen_programs(case, portable, tmp_path):
    from deepmd_paddle.io.frozen import freeze

    freeze(str(FIX / f"{case}.dp"), str(tmp_path / "frz"), portable=portable)
    _check(DeepPot(str(tmp_path / "frz")), np.load(FIX / f"{case}_ref.npz"))


@pytest.mark.parametrize("case", CASES)
def test_dp_round_trip(case, tmp_path):
    from deepmd_paddle.io.dp_format import read_dict, save_dp

    save_dp(load_model(str(FIX / f"{case}.pb")), str(tmp_path / "out.dp"))
    data, _ = read_dict(str(tmp_path / "out.dp"))
    src, _ = read_dict(str(FIX / f"{case}.dp"))
    for part, key in (("descriptor", "exclude_types"), ("fitting", "atom_ener")):
        assert data["model"][part][key] == src["model"][part][key]
    _check(DeepPot(str(tmp_path / "out.dp")), np.load(FIX / f"{case}_ref.npz"))


@needs_op
@pytest.mark.parametrize("case", ["excl_two_side", "excl_one_side"])
def test_compressed(case):
    """Tables of a model with excluded pairs: within 1e-7 eV/atom and 1e-6 eV/A of DeePMD-kit's
    uncompressed outputs, and no input outside the tables (the zero rows are inside)."""
    from deepmd_paddle.model.tabulate import compress_model

    ref = np.load(FIX / f"{case}_ref.npz")
    model = compress_model(load_model(str(FIX / f"{case}.dp")), 0.01, 5, 5)
    got = dict(zip(KEYS, DeepPot(model).eval(ref["coord"], ref["cell"], ref["atype"], atomic=True)))
    assert np.abs(got["energy"] - ref["energy"]).max() / len(ref["atype"]) < 1e-7
    assert np.abs(got["force"] - ref["force"]).max() < 1e-6
    assert model.descriptor.tabulation.n_out_of_range == 0
