"""The training step's fitting-net operator (``deepmd_fitting_ener``, custom_ops/fitting_op.cc):
E and dE/dx of an energy fitting net in one call, and the gradient of sum Ebar E + <xdot, dE/dx>
in x and every weight. Held to finite differences (float64), to autograd through the twin in
both precisions and for every layer shape the fitting nets have (resnet on equal and on doubled
widths, with and without timesteps), and the training step with it to the step without it."""
from __future__ import annotations

import numpy as np
import paddle
import pytest

from conftest import loss_batch, make_small_model, random_system, small_model_config
from deepmd_paddle.kernels import backend, twins
from deepmd_paddle.kernels.build import load_library

pytestmark = pytest.mark.skipif(load_library() is None or not backend("cpp").has("fitting_ener"),
                                reason="the C++ operators are not available here")


def _net(widths, timestep, dtype, seed=0):
    rng = np.random.default_rng(seed)
    params = []
    for i, ts in enumerate(timestep):
        ni, no = widths[i], widths[i + 1]
        params += [rng.normal(size=(ni, no)) / np.sqrt(ni), rng.normal(size=no)]
        if ts:
            params.append(rng.normal(0.1, 0.3, size=no))
    params += [rng.normal(size=(widths[-1], 1)) * 0.3, rng.normal(size=1)]
    return [paddle.to_tensor(p.astype(dtype)) for p in params]


def _phi(fn, x, params, timestep, ebar, gxbar):
    """sum Ebar E + <gxbar, dE/dx> and its gradient in x and the weights."""
    x = x.detach()
    ps = [p.detach() for p in params]
    for t in [x] + ps:
        t.stop_gradient = False
    e, gx = fn(x, ps, timestep)
    terms = ([(e * ebar).sum()] if ebar is not None else []) + ([(gx * gxbar).sum()] if gxbar is not None else [])
    phi = sum(terms)
    grads = paddle.grad(phi, [x] + ps, allow_unused=True)  # (without the energy term b_o has none)
    return e.numpy(), gx.numpy(), float(phi), [np.zeros(t.shape) if g is None else g.numpy()
                                               for g, t in zip(grads, [x] + ps)]


SHAPES = [([30, 24, 24, 24], [0, 1, 1]),  # DeePMD-kit's fitting: first layer, then resnet + timestep
          ([30, 12, 24, 24], [1, 1, 0]),  # resnet on a doubled width (x' = t + [x, x]), one layer without idt
          ([30, 16], [0])]                # one hidden layer, no skip connection


@pytest.mark.parametrize("widths,timestep", SHAPES)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("terms", ["both", "energy", "gradient"])
def test_operator_equals_autograd(widths, timestep, dtype, terms):
    rng = np.random.default_rng(3)
    params = _net(widths, timestep, dtype)
    x = paddle.to_tensor(rng.normal(size=(9, widths[0])).astype(dtype) * 0.5)
    ebar = paddle.to_tensor(rng.normal(size=(9, 1)).astype(dtype)) if terms != "gradient" else None
    gxbar = paddle.to_tensor(rng.normal(size=(9, widths[0])).astype(dtype)) if terms != "energy" else None
    got = _phi(backend("cpp").fitting_ener, x, params, timestep, ebar, gxbar)
    want = _phi(twins.fitting_ener, x, params, timestep, ebar, gxbar)
    rtol = 1e-12 if dtype == "float64" else 2e-5
    for g, w in zip(list(got[:2]) + got[3], list(want[:2]) + want[3]):
        np.testing.assert_allclose(g, w, rtol=rtol, atol=rtol * np.abs(w).max())
    assert got[2] == pytest.approx(want[2], rel=rtol)


def test_gradient_equals_finite_differences():
    """d(sum Ebar E + <xdot, dE/dx>)/d(theta) by central differences of the operator's own values."""
    widths, timestep = [20, 12, 12, 24], [1, 1, 1]
    rng = np.random.default_rng(5)
    params = _net(widths, timestep, "float64", seed=2)
    x = paddle.to_tensor(rng.normal(size=(5, widths[0])) * 0.5)
    ebar, gxbar = paddle.to_tensor(rng.normal(size=(5, 1))), paddle.to_tensor(rng.normal(size=(5, widths[0])))
    op = backend("cpp").fitting_ener
    _, _, _, grads = _phi(op, x, params, timestep, ebar, gxbar)

    def phi(x_, ps):
        with paddle.no_grad():
            e, gx = op(x_, ps, timestep)
            return float((e * ebar).sum() + (gx * gxbar).sum())

    h = 1e-6
    checked = 0
    for k, target in enumerate([x] + params):
        flat = target.numpy().reshape(-1)
        for idx in rng.choice(flat.size, size=min(3, flat.size), replace=False):
            vals = []
            for sign in (1, -1):
                moved = flat.copy()
                moved[idx] += sign * h
                t = paddle.to_tensor(moved.reshape(target.shape))
                vals.append(phi(t, params) if k == 0 else phi(x, [t if j == k - 1 else p for j, p in enumerate(params)]))
            fd = (vals[0] - vals[1]) / (2 * h)
            assert grads[k].reshape(-1)[idx] == pytest.approx(fd, rel=1e-6, abs=1e-7), (k, idx)
            checked += 1
    assert checked == 3 * (1 + len(params)) - 2  # (the output bias has one value)


@pytest.mark.parametrize("change,expected", [
    ({}, True),
    ({"activation_function": "gelu"}, False),
    ({"atom_ener": [1.0, None]}, False),
    ({"numb_fparam": 1}, False),
])
def test_fitting_nets_that_take_the_operator(change, expected):
    from deepmd_paddle.config import normalize_model
    from deepmd_paddle.model import EnergyModel

    cfg = small_model_config()
    cfg["fitting_net"].update(change)
    m = EnergyModel.from_config(normalize_model(cfg))
    m.set_kernels(backend("cpp"))
    assert (m.fitting_kernel_params(0) is not None) is expected
    if change.get("atom_ener"):
        assert m.fitting_kernel_params(1) is not None  # (only the type with an isolated-atom energy is left out)


def test_mixed_precision_keeps_the_layers():
    from deepmd_paddle.config import normalize_model
    from deepmd_paddle.model import EnergyModel
    from deepmd_paddle.model.mixed_precision import enable

    m = EnergyModel.from_config(normalize_model(small_model_config(precision="float32")))
    m.set_kernels(backend("cpp"))
    assert m.fitting_kernel_params(0) is not None
    enable(m, {"output_prec": "float32", "compute_prec": "bfloat16"})
    assert m.fitting_kernel_params(0) is None


@pytest.mark.parametrize("precision", ["float64", "float32"])
def test_training_step_with_and_without_the_operator(precision, monkeypatch):
    """The hand-assembled training step gives the same loss and gradients with the fitting
    operator as with autograd through the fitting layers."""
    from deepmd_paddle.model import EnergyModel
    from deepmd_paddle.train import fused_step

    coord, atype, cell = random_system(14, 2, "triclinic", seed=21)
    batch, loss_fn = loss_batch(coord, atype, cell)
    results = []
    for use in (True, False):
        m = make_small_model(True, resnet_dt=True, precision=precision)
        if not use:
            monkeypatch.setattr(EnergyModel, "fitting_kernel_params", lambda self, ti: None)
        else:
            assert m.fitting_kernel_params(0) is not None and m.fitting_kernel_params(1) is not None
        loss, _ = fused_step.step(m, loss_fn, batch, 5e-4)
        results.append((float(loss), [p.grad.numpy() for p in m.parameters()]))
        monkeypatch.undo()
    (l0, g0), (l1, g1) = results
    tol = 1e-12 if precision == "float64" else 2e-5
    assert l0 == pytest.approx(l1, rel=tol)
    for a, b in zip(g0, g1):
        np.testing.assert_allclose(a, b, rtol=tol * 10, atol=tol * np.abs(b).max())


@pytest.mark.parametrize("desc_prec,fit_prec", [("float32", "float64"), ("float64", "float32")])
def test_descriptor_and_fitting_of_different_precision(desc_prec, fit_prec):
    """DeePMD-kit's descriptor and fitting_net each have a ``precision``; the fitting input is
    cast to the fitting's (it was an internal dtype error in every path). The fused step equals
    autograd through the layers, and the energy equals the one of the plain-Paddle twins."""
    from deepmd_paddle.config import normalize_model
    from deepmd_paddle.model import EnergyModel
    from deepmd_paddle.train import fused_step

    cfg = small_model_config(precision=desc_prec)
    cfg["fitting_net"]["precision"] = fit_prec
    coord, atype, cell = random_system(14, 2, "triclinic", seed=21)
    batch, loss_fn = loss_batch(coord, atype, cell)
    models = []
    for kernels in ("cpp", "cpp", "paddle"):
        m = EnergyModel.from_config(normalize_model(cfg))
        m.set_kernels(backend(kernels))
        models.append(m)
    fused, ref, twin = models
    assert fused.fitting_kernel_params(0) is not None
    loss, _ = fused_step.step(fused, loss_fn, batch, 5e-4)
    ref.descriptor.prefer_fused_training = False
    out = ref(batch["coord"], batch["atype"], batch["box"], create_graph=True)
    loss_ref, _ = loss_fn(out, batch, 5e-4)
    loss_ref.backward()
    assert float(loss) == pytest.approx(float(loss_ref), rel=1e-6)
    for p, q in zip(fused.parameters(), ref.parameters()):
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-4, atol=1e-5 * np.abs(q.grad.numpy()).max())
    e_twin = twin(batch["coord"], batch["atype"], batch["box"])["energy"].numpy()
    np.testing.assert_allclose(out["energy"].numpy(), e_twin, rtol=1e-6)


def test_training_with_two_precisions_and_restart(tmp_path):
    """A float32 descriptor with a float64 fitting net trains (Paddle's Adam keeps one learning
    rate dtype: train/optim.py gives one Adam per dtype) and a restart from the step-3 checkpoint
    with the optimizer's slots repeats the uninterrupted run to step 6 bit for bit."""
    from test_trainable import _config
    from deepmd_paddle.data.demo import make_demo
    from deepmd_paddle.train.trainer import Trainer

    data = make_demo(str(tmp_path / "emt"), seed=7, segments=2, valid_segments=1, frames_per_segment=5, every=2,
                     n_ag=4)
    cfg = _config(data, steps=6, descriptor={"precision": "float32"}, fitting={"precision": "float64"})
    cfg["training"]["save_freq"] = 3
    full = Trainer(cfg, str(tmp_path / "full"))
    start = [p.numpy().copy() for p in full.model.parameters()]
    full.run()
    again = Trainer(cfg, str(tmp_path / "again"), restart=str(tmp_path / "full" / "model.ckpt-3"))
    again.run()
    assert {str(p.dtype) for p in full.model.parameters()} == {"paddle.float32", "paddle.float64"}
    moved = 0
    for (name, p), q, p0 in zip(full.model.named_parameters(), again.model.parameters(), start):
        np.testing.assert_array_equal(p.numpy(), q.numpy(), err_msg=name)
        moved += not np.array_equal(p.numpy(), p0)
    assert moved == len(start)  # (both dtypes' parameters trained)
