"""Frame and atomic parameters in models built here: forces and the force-loss weight gradient by
finite differences, the fitting input's order, default_fparam and use_aparam_as_mask, the fused
training step against autograd, training on data with fparam.npy/aparam.npy, and the input
checks (DeePMD-kit's own models: tests/test_fparam.py)."""
import pathlib

import numpy as np
import paddle
import pytest

from conftest import loss_batch, make_small_model, random_system, small_model_config, to_tensors
from deepmd_paddle import config
from deepmd_paddle.config import ConfigError
from deepmd_paddle.data.system import DataError


def _close(a, b, rtol=1e-10):
    np.testing.assert_allclose(np.reshape(a, np.shape(b)), b, rtol=rtol, atol=rtol * np.abs(b).max())


def _fp_model(use_op, tebd=None, **fit):
    """The small test model with these fitting_net keys (``tebd``: a model-level type_embedding)."""
    from deepmd_paddle.kernels.build import load_library
    from deepmd_paddle.model import EnergyModel
    from conftest import kernels_for

    if use_op and load_library() is None:
        pytest.skip("the C++ operator is not available on this machine")
    cfg = small_model_config()
    cfg["fitting_net"].update(fit)
    if tebd:
        cfg["type_embedding"] = tebd
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


@pytest.mark.parametrize("tebd", [None, {"neuron": [4], "seed": 5}])
def test_fused_training_step_with_parameters(tebd):
    """The fused C++ training step gives autograd's loss and gradients with fparam/aparam (with
    DeePMD-kit's type embedding too: one fitting net fed with [D, e(t_i), fparam, aparam])."""
    from deepmd_paddle.train import fused_step

    coord, atype, cell = random_system(14, 2, "triclinic", seed=21)
    batch, loss_fn = loss_batch(coord, atype, cell)
    rng = np.random.default_rng(5)
    batch["fparam"] = paddle.to_tensor(rng.uniform(size=(2, 2)))
    batch["aparam"] = paddle.to_tensor(rng.uniform(size=(2, 14, 1)))
    ref = _fp_model(True, tebd, numb_fparam=2, numb_aparam=1)
    ref.descriptor.prefer_fused_training = False
    out = ref(batch["coord"], batch["atype"], batch["box"], create_graph=True, fparam=batch["fparam"],
              aparam=batch["aparam"])
    loss_ref, _ = loss_fn(out, batch, 5e-4)
    loss_ref.backward()
    m = _fp_model(True, tebd, numb_fparam=2, numb_aparam=1)
    assert fused_step.supported(m) and m.fitting.mixed_types == bool(tebd)
    loss, _ = fused_step.step(m, loss_fn, batch, 5e-4)
    assert float(loss) == pytest.approx(float(loss_ref), rel=1e-12)
    for (name, p), q in zip(m.named_parameters(), ref.parameters()):
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-10,
                                   atol=1e-11 * np.abs(q.grad.numpy()).max(), err_msg=name)


@pytest.mark.parametrize("fused", ["1", "0"])
def test_training_with_parameters(tmp_path, monkeypatch, fused):
    """Training reads fparam.npy/aparam.npy, sets their statistics, and the loss goes down;
    a missing aparam.npy is an error naming the file and the key."""
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



@pytest.mark.parametrize("fit, message", [
    ({"numb_aparam": -1}, r"model/fitting_net/numb_aparam: got -1; need an integer >= 0"),
    ({"numb_fparam": 2, "default_fparam": [1.0]}, r"model/fitting_net/default_fparam: got \[1.0\]; need numb_fparam = 2"),
])
def test_bad_input_names_the_key(tmp_path, fit, message):
    from deepmd_paddle.data.demo import write_system

    write_system(str(tmp_path / "sys"), {"coord": np.random.default_rng(0).uniform(0, 6, (2, 6)),
                                         "box": np.tile(np.eye(3).ravel() * 6, (2, 1)), "energy": np.zeros(2)},
                 np.array([0, 1]), ["O", "H"])
    raw = {"model": {"type_map": ["O", "H"], "descriptor": {"type": "se_e2_a", "sel": [4, 4], "rcut": 3.0},
                     "fitting_net": {"neuron": [8], **fit}},
           "training": {"training_data": {"systems": [str(tmp_path / "sys")]}, "numb_steps": 1}}
    with pytest.raises(ConfigError, match=message):
        config.normalize(raw)
    with pytest.raises(ValueError, match=message.replace("model/", "")):  # the model's own check
        _fp_model(False, **fit)
