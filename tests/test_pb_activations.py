"""DeePMD-kit's activation functions as its TensorFlow backend computes them in a trained model:
small water models trained by ``dp --tf train`` with each activation in the embedding nets and
in the fitting nets (``tests/fixtures/deepmd_pb/make.py``, cases ``act_<descriptor>_<fitting>``),
read from their .pb here; every output of DeePMD-kit TF's DeepPot to 1e-10, with the C++
operators and with the plain-Paddle kernels (tests/test_activations.py checks the functions and
their derivatives one by one)."""
import pathlib

import numpy as np
import paddle
import pytest

from deepmd_paddle.io.tf_graph import load_pb
from deepmd_paddle.kernels import backend

FIX = pathlib.Path(__file__).parent / "fixtures" / "deepmd_pb"
KEYS = ("energy", "force", "virial", "atom_energy", "atom_virial")
CASES = ["act_relu_relu6", "act_softplus_sigmoid", "act_gelu_gelu_tf", "act_silu_linear"]
# TensorFlow's tf.nn.gelu(approximate=True) (gelu_tf) deviates from its own formula by ~1e-9
# relative in float64 (atomic energies 7.7e-10 eV off the formula evaluated in NumPy, which ours
# equals to 1e-14: test_gelu_tf_is_the_formula); DeePMD-kit's gelu (its own C++ operator) does not
RTOL = {"act_gelu_gelu_tf": 1e-8}


def _close(a, b, rtol=1e-10):
    np.testing.assert_allclose(np.reshape(a, np.shape(b)), b, rtol=rtol, atol=rtol * np.abs(b).max())


@pytest.mark.parametrize("case", CASES)
def test_deeppot_parity(case):
    from deepmd_paddle.infer import DeepPot

    ref = np.load(FIX / f"{case}_ref.npz")
    dp = DeepPot(str(FIX / f"{case}.pb"))
    got = dict(zip(KEYS, dp.eval(ref["coord"], ref["cell"], ref["atype"], atomic=True)))
    got["descriptor"] = dp.eval_descriptor(ref["coord"][:1], ref["cell"][:1], ref["atype"])
    for key in KEYS + ("descriptor",):
        _close(got[key], ref[key], RTOL.get(case, 1e-10))


@pytest.mark.parametrize("case", CASES)
def test_plain_paddle_path(case):
    ref = np.load(FIX / f"{case}_ref.npz")
    model = load_pb(str(FIX / f"{case}.pb"))
    d_act, f_act = case.split("_")[1:3] if case != "act_gelu_gelu_tf" else ("gelu", "gelu_tf")
    assert model.descriptor.activation_function == d_act and model.fitting.activation_function == f_act
    model.set_kernels(backend("paddle"))
    nf = ref["coord"].shape[0]
    out = model(paddle.to_tensor(ref["coord"].reshape(nf, -1, 3)), paddle.to_tensor(np.tile(ref["atype"], (nf, 1))),
                paddle.to_tensor(ref["cell"].reshape(nf, 9)), do_atomic_virial=True)
    for key in KEYS:
        _close(out[key].numpy(), ref[key], RTOL.get(case, 1e-10))


def test_gelu_tf_is_the_formula():
    """The fitting nets of act_gelu_gelu_tf evaluated in NumPy with 0.5 x (1 + tanh(sqrt(2/pi)
    (x + 0.044715 x^3))) on DeePMD-kit's descriptor give our atomic energies to 1e-12."""
    from deepmd_paddle.infer import DeepPot
    from deepmd_paddle.io.tf_graph import read_pb

    data, _ = read_pb(str(FIX / "act_gelu_gelu_tf.pb"))
    ref = np.load(FIX / "act_gelu_gelu_tf_ref.npz")
    fit, at = data["model"]["fitting"], ref["atype"]
    want = np.zeros(len(at))
    for t, net in enumerate(fit["nets"]["networks"]):
        x = ref["descriptor"][0][at == t]
        for layer in net["layers"]:
            v = layer["@variables"]
            y = x @ v["w"] + v["b"]
            if layer["activation_function"] != "none":
                assert layer["activation_function"] == "gelu_tf"
                y = 0.5 * y * (1 + np.tanh(0.7978845608028654 * (y + 0.044715 * y ** 3)))
                y = y * v["idt"] if v["idt"] is not None else y
                y = y + x if layer["resnet"] and y.shape == x.shape else y
            x = y
        want[at == t] = x[:, 0] + fit["@variables"]["bias_atom_e"][t, 0]
    want += data["model"]["@variables"]["out_bias"].reshape(-1)[at]
    got = DeepPot(str(FIX / "act_gelu_gelu_tf.pb")).eval(ref["coord"][:1], ref["cell"][:1], at, atomic=True)[3]
    np.testing.assert_allclose(got.reshape(-1), want, rtol=0, atol=1e-12)
    assert np.abs(want - ref["atom_energy"][0].reshape(-1)).max() > 1e-10  # TensorFlow's own deviation
