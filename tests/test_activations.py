"""Activations as DeePMD-kit defines them (tests/fixtures/deepmd_activations/make.py evaluates its
own functions on a grid), twice differentiable (force training differentiates the nets twice),
and a model with a non-tanh activation: forces are minus the energy gradient."""
from __future__ import annotations

import pathlib

import numpy as np
import paddle
import pytest

from conftest import random_system, small_model_config, to_tensors
from deepmd_paddle.model import EnergyModel
from deepmd_paddle.model.network import ACTIVATIONS

FIXTURE = pathlib.Path(__file__).parent / "fixtures" / "deepmd_activations" / "activations.npz"
NAMES = ["tanh", "gelu", "gelu_tf", "relu", "relu6", "softplus", "sigmoid", "silu", "linear", "none"]


@pytest.mark.parametrize("name", NAMES)
def test_values_equal_deepmd_kit(name):
    ref = np.load(FIXTURE)
    got = ACTIVATIONS[name](paddle.to_tensor(ref["x"])).numpy()
    np.testing.assert_allclose(got, ref[name], rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("name", NAMES)
def test_second_derivative_equals_finite_differences(name):
    x0 = np.array([-3.1, -0.7, 0.4, 1.3, 4.6, 7.2])  # away from the kinks of relu and relu6
    x = paddle.to_tensor(x0)
    x.stop_gradient = False
    (d1,) = paddle.grad(ACTIVATIONS[name](x).sum(), x, create_graph=True)
    (d2,) = paddle.grad(d1.sum(), x, allow_unused=True)
    d2 = np.zeros_like(x0) if d2 is None else d2.numpy()
    f = lambda v: ACTIVATIONS[name](paddle.to_tensor(v)).numpy()  # noqa: E731
    h = 1e-4
    fd = (f(x0 + h) - 2 * f(x0) + f(x0 - h)) / h ** 2
    np.testing.assert_allclose(d2, fd, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["gelu", "silu", "softplus"])
def test_model_forces_are_minus_energy_gradient(name):
    from deepmd_paddle.config import normalize_model

    cfg = small_model_config()
    cfg["descriptor"]["activation_function"] = name
    cfg["fitting_net"]["activation_function"] = name
    model = EnergyModel.from_config(normalize_model(cfg))
    assert not model.descriptor.fused_ready()  # the fused C++ nets are tanh only: autograd trains these
    coord, atype, cell = random_system(10, kind="ortho", seed=2)
    c, a, b = to_tensors(coord, atype, cell)
    force = model(c, a, b)["force"].numpy()[0]
    h, k = 1e-5, 3
    fd = []
    for d in range(3):
        e = []
        for s in (h, -h):
            x = coord.copy()
            x[0, k, d] += s
            e.append(float(model(paddle.to_tensor(x), a, b)["energy"].numpy().sum()))
        fd.append(-(e[0] - e[1]) / (2 * h))
    np.testing.assert_allclose(force[k], fd, rtol=1e-6, atol=1e-8)
