"""Frame and atomic parameters (``numb_fparam``, ``numb_aparam``, ``default_fparam``,
``use_aparam_as_mask``): DeePMD-kit's models evaluate to its numbers, in every path.

Fixtures (``tests/fixtures/deepmd_fparam``, made by ``make.py`` there with DeePMD-kit 3.2.0 TF):
two small water models trained by ``dp --tf train`` on data with made-up fparam/aparam, frozen
(``.pb``) and converted (``dp convert-backend``, ``.dp``), with DeePMD-kit's ``DeepPot`` outputs on
two frames of data_3 and on an open cluster. Every output must agree to 1e-10 relative.
"""
import json
import pathlib

import numpy as np
import paddle
import pytest

from conftest import loss_batch, make_small_model, random_system, small_model_config, to_tensors
from deepmd_paddle.data.system import DataError

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


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("ext", [".dp", ".pb"])
def test_deeppot_parity(case, ext):
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
    (sys_dir / "set.000" / "aparam.npy").unlink()
    capsys.readouterr()
    assert main(["test", "-m", str(FIX / "fa.pb"), "-s", str(sys_dir)]) != 0
    assert "set.000/aparam.npy is missing: model/fitting_net/numb_aparam = 1" in capsys.readouterr().err


# ----------------------------------------------------------------------------- models built here
def _fp_model(use_op, **fit):
    from deepmd_paddle import config
    from deepmd_paddle.kernels.build import load_library
    from deepmd_paddle.model import EnergyModel
    from conftest import kernels_for

    if use_op and load_library() is None:
        pytest.skip("the C++ operator is not available on this machine")
    cfg = small_model_config()
    cfg["fitting_net"].update(fit)
    model = EnergyModel.from_config(config.normalize_model(cfg))
    ref = make_small_model(use_op)
    model.descriptor.set_stat(ref.descriptor.davg.numpy(), ref.descriptor.dstd.numpy())
    model.fitting.set_bias([-1.0, -0.5])
    if model.fitting.inputs is not None:
        stats = {"fparam": ([0.5, 1.0], [2.0, 0.5]), "aparam": ([0.1], [3.0])}
        model.fitting.inputs.set_stats({k: v for k, v in stats.items() if getattr(model.fitting.inputs, f"numb_{k}")})
    model.set_kernels(kernels_for(use_op))
    return model


@pytest.mark.parametrize("use_op", [False, True])
def test_forces_are_minus_energy_gradient(use_op):
    model = _fp_model(use_op, numb_fparam=2, numb_aparam=1)
    coord, atype, cell = random_system(12, 1, "triclinic", seed=3)
    rng = np.random.default_rng(2)
    params = {"fparam": paddle.to_tensor(rng.uniform(size=(1, 2))),
              "aparam": paddle.to_tensor(rng.uniform(size=(1, 12, 1)))}

    def energy(c):
        return model(*to_tensors(c, atype, cell), **params)["energy"].numpy()[0, 0]

    out = model(*to_tensors(coord, atype, cell), **params)
    h = 1e-5
    for i, a in ((0, 0), (3, 1), (7, 2), (10, 0)):
        cp, cm = coord.copy(), coord.copy()
        cp[0, i, a] += h
        cm[0, i, a] -= h
        assert out["force"].numpy()[0, i, a] == pytest.approx(-(energy(cp) - energy(cm)) / (2 * h), rel=1e-6, abs=1e-8)
    other = model(*to_tensors(coord, atype, cell), fparam=params["fparam"] * 2, aparam=params["aparam"])
    assert abs(other["energy"].numpy() - out["energy"].numpy()).max() > 1e-4


@pytest.mark.parametrize("use_op", [False, True])
def test_force_loss_weight_gradient(use_op):
    """d/dw of a loss on forces (the double gradient, through [D, fparam, aparam]) equals finite
    differences, for first-layer fitting weights of a descriptor column and of the parameter columns."""
    model = _fp_model(use_op, numb_fparam=2, numb_aparam=1)
    coord, atype, cell = random_system(12, 2, "ortho", seed=7)
    c, a, b = to_tensors(coord, atype, cell)
    rng = np.random.default_rng(0)
    fp, ap = paddle.to_tensor(rng.uniform(size=(2, 2))), paddle.to_tensor(rng.uniform(size=(2, 12, 1)))
    target = paddle.to_tensor(rng.normal(size=(2, 12, 3)))

    def loss():
        f = model(c, a, b, create_graph=True, fparam=fp, aparam=ap)["force"]
        return ((f - target) ** 2).sum()

    w = model.fitting.nets[1].layers[0].w  # rows: descriptor, then 2 fparam, then 1 aparam
    (g,) = paddle.grad(loss(), [w])
    base, h, nd = w.numpy().copy(), 1e-4, model.descriptor.get_dim_out()
    for idx in [(0, 0), (nd, 3), (nd + 1, 1), (nd + 2, 5)]:
        values = []
        for step in (h, -h):
            v = base.copy()
            v[idx] += step
            w.set_value(v)
            values.append(float(loss()))
        w.set_value(base)
        assert float(g.numpy()[idx]) == pytest.approx((values[0] - values[1]) / (2 * h), rel=1e-6, abs=1e-9), idx


def test_fitting_input_is_descriptor_then_parameters():
    """E_i = N_t([D_i, (fparam - avg) inv_std, (aparam_i - avg) inv_std]) + bias (DeePMD-kit's order),
    evaluated by hand from the descriptor and the nets."""
    model = _fp_model(False, numb_fparam=2, numb_aparam=1)
    coord, atype, cell = random_system(9, 1, "ortho", seed=4)
    fp, ap = np.array([[0.3, 1.7]]), np.linspace(-1, 1, 9).reshape(1, 9, 1)
    out = model(*to_tensors(coord, atype, cell), fparam=paddle.to_tensor(fp), aparam=paddle.to_tensor(ap))
    d = model.descriptor_of(*to_tensors(coord, atype, cell))[0]
    x = np.concatenate([d, np.tile((fp - [0.5, 1.0]) * [2.0, 0.5], (9, 1)), (ap[0] - 0.1) * 3.0], axis=1)
    for i, t in enumerate(atype[0]):
        e = model.fitting.nets[t](paddle.to_tensor(x[i:i + 1])).numpy()[0, 0] + [-1.0, -0.5][t]
        assert out["atom_energy"].numpy()[0, i, 0] == pytest.approx(e, rel=1e-12)


def test_default_fparam_and_mask():
    model = _fp_model(False, numb_fparam=2, default_fparam=[0.3, 1.7], numb_aparam=1, use_aparam_as_mask=True)
    assert model.fitting.nets[0].n_in == model.descriptor.get_dim_out() + 2  # aparam is no fitting input
    coord, atype, cell = random_system(9, 1, "ortho", seed=4)
    ap = paddle.to_tensor(np.zeros((1, 9, 1)))
    e_default = model(*to_tensors(coord, atype, cell), aparam=ap)["energy"].numpy()
    e_given = model(*to_tensors(coord, atype, cell), fparam=paddle.to_tensor([[0.3, 1.7]]), aparam=ap)["energy"].numpy()
    assert e_default.tolist() == e_given.tolist()
    from deepmd_paddle.infer import DeepPot

    dp = DeepPot(model)
    assert dp.has_default_fparam() and dp.get_default_fparam() == [0.3, 1.7]
    e, _, _ = dp.eval(coord, cell, atype[0], aparam=[5.0])  # the mask does not enter the energy
    _close(e, e_default, 1e-13)
    with pytest.raises(ValueError, match="default_fparam"):
        _fp_model(False, numb_fparam=2, default_fparam=[0.3])


def test_fused_training_step_with_parameters():
    """The fused C++ training step gives autograd's loss and gradients with fparam/aparam."""
    from deepmd_paddle.train import fused_step

    coord, atype, cell = random_system(14, 2, "triclinic", seed=21)
    batch, loss_fn = loss_batch(coord, atype, cell)
    rng = np.random.default_rng(5)
    batch["fparam"] = paddle.to_tensor(rng.uniform(size=(2, 2)))
    batch["aparam"] = paddle.to_tensor(rng.uniform(size=(2, 14, 1)))
    ref = _fp_model(True, numb_fparam=2, numb_aparam=1)
    ref.descriptor.prefer_fused_training = False
    out = ref(batch["coord"], batch["atype"], batch["box"], create_graph=True, fparam=batch["fparam"],
              aparam=batch["aparam"])
    loss_ref, _ = loss_fn(out, batch, 5e-4)
    loss_ref.backward()
    m = _fp_model(True, numb_fparam=2, numb_aparam=1)
    assert fused_step.supported(m)
    loss, _ = fused_step.step(m, loss_fn, batch, 5e-4)
    assert float(loss) == pytest.approx(float(loss_ref), rel=1e-12)
    for (name, p), q in zip(m.named_parameters(), ref.parameters()):
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-10,
                                   atol=1e-11 * np.abs(q.grad.numpy()).max(), err_msg=name)


@pytest.mark.parametrize("fused", ["1", "0"])
def test_training_with_parameters(tmp_path, monkeypatch, fused):
    """Training reads fparam.npy/aparam.npy, sets their statistics, and the loss goes down;
    a missing aparam.npy is an error naming the file and the key."""
    from deepmd_paddle import config
    from deepmd_paddle.data.demo import make_demo
    from deepmd_paddle.train.trainer import Trainer

    monkeypatch.setenv("DEEPMD_PADDLE_FUSED_TRAINING", fused)
    data = make_demo(str(tmp_path / "data"), seed=7, segments=1, valid_segments=1, frames_per_segment=6, every=2,
                     n_ag=4)
    rng = np.random.default_rng(0)
    for sys_dir in (data["train"], data["valid"]):
        for s in pathlib.Path(sys_dir).glob("set.*"):
            nf = np.load(s / "coord.npy").shape[0]
            natoms = np.loadtxt(pathlib.Path(sys_dir) / "type.raw").size
            np.save(s / "fparam.npy", rng.uniform(2.0, 4.0, (nf, 1)))
            np.save(s / "aparam.npy", rng.uniform(-1.0, 1.0, (nf, natoms)))
    cfg = {
        "model": {"type_map": ["Cu", "Ag"],
                  "descriptor": {"type": "se_e2_a", "sel": "auto", "rcut": 4.0, "rcut_smth": 2.0, "neuron": [4, 8],
                                 "axis_neuron": 4, "type_one_side": True},
                  "fitting_net": {"neuron": [16, 16], "numb_fparam": 1, "numb_aparam": 1}},
        "learning_rate": {"start_lr": 3e-3, "stop_lr": 1e-4, "decay_steps": 10},
        "loss": {"start_pref_e": 0.2, "limit_pref_e": 1, "start_pref_f": 100, "limit_pref_f": 1},
        "training": {"training_data": {"systems": [data["train"]], "batch_size": 2},
                     "validation_data": {"systems": [data["valid"]], "batch_size": 2, "numb_btch": 2},
                     "numb_steps": 40, "seed": 3, "disp_freq": 20, "save_freq": 40},
    }
    trainer = Trainer(config.normalize(cfg), str(tmp_path / "run"))
    assert trainer.fused == (fused == "1")
    fp = np.concatenate([s.params["fparam"] for s in trainer.train_data.systems])  # every frame is in the sample
    assert trainer.model.fitting.inputs.fparam_avg.numpy()[0] == pytest.approx(fp.mean(), rel=1e-12)
    assert trainer.model.fitting.inputs.fparam_inv_std.numpy()[0] == pytest.approx(1 / fp.std(), rel=1e-10)
    trainer.run()
    lc = np.loadtxt(tmp_path / "run" / "lcurve.out", ndmin=2)
    assert lc[-1, 1] < lc[0, 1]  # validation loss
    (next(pathlib.Path(data["train"]).glob("set.*")) / "aparam.npy").unlink()
    with pytest.raises(DataError, match=r"aparam.npy is missing: model/fitting_net/numb_aparam = 1"):
        Trainer(config.normalize(cfg), str(tmp_path / "run2"))


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


def test_lammps_adapter_uses_default_fparam(tmp_path):
    """The pair style's lower call gets the model's default_fparam (no LAMMPS needed: the adapter
    is called with numpy arrays, an open cluster, every atom local)."""
    from deepmd_paddle.infer import DeepPot
    from deepmd_paddle.io import save_dp
    from deepmd_paddle.lammps.adapter import LammpsModel

    save_dp(_fp_model(False, numb_fparam=2, default_fparam=[0.3, 1.7]), str(tmp_path / "m.dp"))
    lmp = LammpsModel(str(tmp_path / "m.dp"), "O H")
    coord, atype, _ = random_system(10, 1, "open", seed=2)
    x, types = np.ascontiguousarray(coord[0]), np.ascontiguousarray(atype[0], dtype=np.int32)
    nlist, _ = lmp.dp._neighbor_list(coord, atype, None)
    nlist = np.ascontiguousarray(nlist[0], dtype=np.int32)
    force, out = np.zeros((10, 3)), np.zeros(7)
    lmp.compute(10, 10, x.ctypes.data, types.ctypes.data, nlist.ctypes.data, nlist.shape[1], force.ctypes.data, 0, 0,
                out.ctypes.data)
    e, f, _ = DeepPot(str(tmp_path / "m.dp")).eval(coord, None, atype[0], fparam=[0.3, 1.7])
    _close(out[0], e[0, 0], 1e-12)
    _close(force, f[0], 1e-12)
