"""Frame and atomic parameters (``numb_fparam``, ``numb_aparam``, ``default_fparam``,
``use_aparam_as_mask``): DeePMD-kit's models evaluate to its numbers, in every path.

Fixtures (``tests/fixtures/deepmd_fparam``, made by ``make.py`` there with DeePMD-kit 3.2.0 TF):
small water models trained by ``dp --tf train`` on data with made-up fparam/aparam, frozen
(``.pb``) and converted (``dp convert-backend``, ``.dp``; not the type-embedding one, which DeePMD-kit
cannot convert), with DeePMD-kit's ``DeepPot`` outputs on two frames of data_3 and on an open cluster. Every output must agree to 1e-10 relative.
"""
import json
import pathlib

import numpy as np
import pytest

from conftest import make_small_model, random_system

FIX = pathlib.Path(__file__).parent / "fixtures" / "deepmd_fparam"
KEYS = ("energy", "force", "virial", "atom_energy", "atom_virial")
CASES = ["fa", "mask"]


def _ref(case):
    return np.load(FIX / f"{case}_ref.npz")


def _close(a, b, rtol=1e-10):
    np.testing.assert_allclose(np.reshape(a, np.shape(b)), b, rtol=rtol, atol=rtol * np.abs(b).max())


def _check_deeppot(dp, ref):
    assert dp.get_dim_fparam() == 1 and dp.get_dim_aparam() == 1 and not dp.has_default_fparam()
    got = dp.eval(ref["coord"], ref["cell"], ref["atype"], atomic=True, fparam=ref["fparam"], aparam=ref["aparam"])
    for key, value in zip(KEYS, got):
        _close(value, ref[key])
    e, f, v = dp.eval(ref["nopbc_coord"], None, ref["nopbc_atype"], fparam=ref["nopbc_fparam"],
                      aparam=ref["nopbc_aparam"])
    for value, key in ((e, "nopbc_energy"), (f, "nopbc_force"), (v, "nopbc_virial")):
        _close(value, ref[key])


@pytest.mark.parametrize("case, ext", [(c, e) for c in CASES for e in (".dp", ".pb")] + [("tebd", ".pb")])
def test_deeppot_parity(case, ext):
    """tebd: DeePMD-kit's type-embedding model, whose one fitting net takes [D, e(t_i), fparam, aparam]."""
    from deepmd_paddle.infer import DeepPot

    _check_deeppot(DeepPot(str(FIX / f"{case}{ext}")), _ref(case))


@pytest.mark.parametrize("case", CASES)
def test_plain_paddle_path_and_blocks(case):
    """The twins of the C++ kernels, and frames cut into blocks of centre atoms (the lower path,
    aparam sliced per block)."""
    from deepmd_paddle.infer import DeepPot
    from deepmd_paddle.io import load_dp
    from deepmd_paddle.kernels import backend

    model = load_dp(str(FIX / f"{case}.dp"))
    model.set_kernels(backend("paddle"))
    ref = _ref(case)
    _check_deeppot(DeepPot(model), ref)
    blocks = DeepPot(str(FIX / f"{case}.dp"), atom_budget=50)  # 192 atoms: 4 blocks
    got = blocks.eval(ref["coord"], ref["cell"], ref["atype"], atomic=True, fparam=ref["fparam"], aparam=ref["aparam"])
    for key, value in zip(KEYS, got):
        _close(value, ref[key])


def test_frozen_programs(tmp_path):
    """The static programs take fparam and aparam (jit and paddle.inference)."""
    from deepmd_paddle.infer import DeepPot
    from deepmd_paddle.io.frozen import freeze

    meta = freeze(str(FIX / "fa.dp"), str(tmp_path / "frozen"))
    assert meta["dim_fparam"] == 1 and meta["dim_aparam"] == 1
    assert meta["programs"]["pbc"]["inputs"] == ["coord", "atype", "box", "fparam", "aparam"]
    assert meta["programs"]["lower"]["inputs"][-2:] == ["fparam", "aparam"]
    ref = _ref("fa")
    for backend in ("jit", "predictor"):
        _check_deeppot(DeepPot(str(tmp_path / "frozen"), backend=backend), ref)
    blocks = DeepPot(str(tmp_path / "frozen"), backend="jit", atom_budget=64)
    got = blocks.eval(ref["coord"], ref["cell"], ref["atype"], fparam=ref["fparam"], aparam=ref["aparam"])
    for key, value in zip(KEYS, got):
        _close(value, ref[key])


@pytest.mark.parametrize("case", CASES)
def test_statistics_as_deepmd_kit(case, tmp_path):
    """avg and 1/std of the training data's fparam/aparam (every frame once: make.py), computed
    here from the same files, equal the graph's constants; the constant fparam of ``mask`` has
    the standard deviation DeePMD-kit's protection gives (1e-2)."""
    from deepmd_paddle.data.params import attach, param_stats
    from deepmd_paddle.data.system import load_system

    ref = _ref(case)
    nf = ref["train_fparam"].shape[0]  # the training data's parameters, with any coordinates
    sys_dir = _system(tmp_path, np.repeat(ref["coord"][:1], nf, 0), np.repeat(ref["cell"][:1], nf, 0), ref["atype"],
                      ref["train_fparam"], ref["train_aparam"])
    s = load_system(str(sys_dir), ["O", "H"])
    attach([s], 1, 1)
    stats = param_stats([s], [np.arange(nf)], protection=1e-2)
    np.testing.assert_allclose(stats["fparam"][0], ref["node:fitting_attr/t_fparam_avg"], rtol=1e-12)
    np.testing.assert_allclose(stats["fparam"][1], ref["node:fitting_attr/t_fparam_istd"], rtol=1e-12)
    if case == "fa":
        np.testing.assert_allclose(stats["aparam"][0], ref["node:fitting_attr/t_aparam_avg"], rtol=1e-10)
        np.testing.assert_allclose(stats["aparam"][1], ref["node:fitting_attr/t_aparam_istd"], rtol=1e-12)
    else:
        assert stats["fparam"][1].tolist() == [100.0]


def test_argument_shapes_and_errors():
    """DeePMD-kit's accepted sizes: fparam [nf, nfp] or [nfp]; aparam [nf, na, nap], [na, nap], [nap]."""
    from deepmd_paddle.infer import DeepPot

    dp, ref = DeepPot(str(FIX / "fa.dp")), _ref("fa")
    c, b, t = ref["coord"], ref["cell"], ref["atype"]
    na = t.size
    e0 = dp.eval(c, b, t, fparam=np.full((2, 1), 0.7), aparam=np.tile(ref["aparam"][:1], (2, 1, 1)))[0]
    e1 = dp.eval(c, b, t, fparam=[0.7], aparam=ref["aparam"][0].reshape(na))[0]  # [nfp]; [na] = [na * nap]
    _close(e1, e0, 1e-13)
    e2 = dp.eval(c, b, t, fparam=np.full((2, 1), 0.7), aparam=[0.25])[0]
    e3 = dp.eval(c, b, t, fparam=np.full((2, 1), 0.7), aparam=np.full((2, na, 1), 0.25))[0]
    _close(e2, e3, 1e-13)
    assert abs(e2 - e0).max() > 1e-3  # aparam enters the energy
    with pytest.raises(ValueError, match=r"takes fparam \(get_dim_fparam\(\) = 1\): give fparam of shape \[2, 1\]"):
        dp.eval(c, b, t, aparam=ref["aparam"])
    with pytest.raises(ValueError, match=r"takes aparam .*\[2, 192, 1\]"):
        dp.eval(c, b, t, fparam=ref["fparam"])
    with pytest.raises(ValueError, match=r"fparam of shape \[3\] \(3 values\) does not fit 2 frame"):
        dp.eval(c, b, t, fparam=[1.0, 2.0, 3.0], aparam=ref["aparam"])
    with pytest.raises(ValueError, match="aparam holds NaN"):
        dp.eval(c, b, t, fparam=ref["fparam"], aparam=np.full((2, na, 1), np.nan))
    plain = DeepPot(make_small_model())
    assert plain.get_dim_fparam() == 0 and plain.get_dim_aparam() == 0
    coord, atype, cell = random_system(9, 1, "ortho", seed=1)
    with pytest.raises(ValueError, match=r"takes no fparam"):
        plain.eval(coord, cell, atype[0], fparam=[1.0])


def test_dp_export_keeps_them(tmp_path):
    """.dp written here: the fitting's numb_fparam/numb_aparam and statistics as DeePMD-kit's
    @variables, read back to the same weights and numbers."""
    import h5py

    from deepmd_paddle.infer import DeepPot
    from deepmd_paddle.io import load_dp, save_dp

    a = load_dp(str(FIX / "mask.dp"))
    save_dp(a, str(tmp_path / "m.dp"))
    with h5py.File(tmp_path / "m.dp") as f:
        fit = json.loads(f.attrs["json"])["model"]["fitting"]
        assert (fit["numb_fparam"], fit["numb_aparam"], fit["use_aparam_as_mask"]) == (1, 1, True)
        assert f[fit["@variables"]["fparam_inv_std"].lstrip("/")][()].tolist() == [100.0]
    b = load_dp(str(tmp_path / "m.dp"))
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and "fitting.inputs.fparam_avg" in sa
    for k in sa:
        assert np.array_equal(sa[k].numpy(), sb[k].numpy()), k
    _check_deeppot(DeepPot(str(tmp_path / "m.dp")), _ref("mask"))


def _system(root, coord, cell, atype, fparam=None, aparam=None, energy=None, force=None):
    sys_dir = root / "sys"
    (sys_dir / "set.000").mkdir(parents=True, exist_ok=True)
    np.savetxt(sys_dir / "type.raw", atype, fmt="%d")
    (sys_dir / "type_map.raw").write_text("O\nH\n")
    nf = coord.shape[0]
    for name, value in (("coord", coord), ("box", cell), ("fparam", fparam), ("aparam", aparam),
                        ("energy", energy), ("force", force)):
        if value is not None:
            np.save(sys_dir / "set.000" / f"{name}.npy", np.reshape(value, (nf, -1)))
    return sys_dir


def test_dpp_test_reads_fparam_and_aparam(tmp_path, capsys):
    from deepmd_paddle.cli import main

    ref = _ref("fa")
    sys_dir = _system(tmp_path, ref["coord"], ref["cell"], ref["atype"], ref["fparam"], ref["aparam"],
                      ref["energy"], ref["force"])
    assert main(["test", "-m", str(FIX / "fa.pb"), "-s", str(sys_dir), "-d", str(tmp_path / "d")]) == 0
    e, f = np.loadtxt(tmp_path / "d.e.out"), np.loadtxt(tmp_path / "d.f.out")
    _close(e[:, 1], e[:, 0])  # the labels are DeePMD-kit's own predictions with these parameters
    _close(f[:, 3:], f[:, :3])
    # model-devi of two models on the same fparam/aparam: the deviation of DeePMD-kit's own forces
    from deepmd_paddle.infer.model_devi import calc_model_devi_f

    out = tmp_path / "md.out"
    assert main(["model-devi", "-m", str(FIX / "fa.pb"), str(FIX / "mask.dp"), "-s", str(sys_dir), "-o", str(out)]) == 0
    want = calc_model_devi_f(np.stack([ref["force"], _ref("mask")["force"]]))
    _close(np.loadtxt(out)[:, 4:7], np.column_stack(want), 1e-6)  # written with 7 digits
    (sys_dir / "set.000" / "aparam.npy").unlink()
    capsys.readouterr()
    assert main(["test", "-m", str(FIX / "fa.pb"), "-s", str(sys_dir)]) != 0
    assert "set.000/aparam.npy is missing: model/fitting_net/numb_aparam = 1" in capsys.readouterr().err


def test_ase_calculator_reads_atoms_info():
    """DeePMD-kit's calculator convention: atoms.info["fparam"], atoms.info["aparam"]."""
    from ase import Atoms

    from deepmd_paddle.calculator import DP

    ref = _ref("fa")
    atoms = Atoms(symbols=[["O", "H"][t] for t in ref["nopbc_atype"]], positions=ref["nopbc_coord"][0], pbc=False)
    atoms.info.update(fparam=ref["nopbc_fparam"][0], aparam=ref["nopbc_aparam"][0])
    atoms.calc = DP(str(FIX / "fa.dp"))
    _close(atoms.get_potential_energy(), ref["nopbc_energy"][0, 0])
    _close(atoms.get_forces(), ref["nopbc_force"][0])
