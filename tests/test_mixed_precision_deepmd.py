"""A model DeePMD-kit 3.2 TensorFlow trained with mixed precision {output float32, compute
bfloat16} (tests/fixtures/deepmd_mixed/make.py made it), evaluated here with the same setting,
against DeePMD-kit's own evaluation of its frozen graph (nets in bfloat16)."""
import pathlib

import numpy as np
import pytest

from deepmd_paddle.infer.deeppot import DeepPot
from deepmd_paddle.io.dp_format import load_dp

HERE = pathlib.Path(__file__).resolve().parent / "fixtures" / "deepmd_mixed"
BF16 = {"output_prec": "float32", "compute_prec": "bfloat16"}


@pytest.fixture(scope="module")
def ref():
    return np.load(HERE / "bf16_ref.npz")


def test_deepmd_kit_bfloat16_model(ref):
    plain = load_dp(str(HERE / "bf16.dp"))  # DeePMD-kit's .dp holds the weights, not the setting
    assert plain.mixed_precision is None
    e0, f0, _ = DeepPot(plain).eval(ref["coord"], ref["cell"], ref["atype"])
    # the weights are DeePMD-kit's: without the roundings both codes agree to float64 rounding
    np.testing.assert_allclose(e0.ravel(), ref["plain_energy"].ravel(), rtol=1e-12)
    mixed = plain.with_mixed_precision(BF16)
    assert mixed.descriptor.precision == "float32" and mixed.mixed_precision == BF16
    e1, f1, v1 = DeepPot(mixed).eval(ref["coord"], ref["cell"], ref["atype"])
    casts = np.abs(ref["energy"] - ref["plain_energy"]).ravel()  # what the bfloat16 nets change: ~0.23 eV
    ours = np.abs(e1 - ref["energy"]).ravel()  # measured 0.057, 0.055 eV
    # most of the casts' effect reproduced; the rest: float32 arithmetic that differs in the last
    # bit moves values across bfloat16 rounding boundaries (each such flip is a 2^-8 change)
    assert (ours < casts / 2).all(), (ours, casts)
    # forces: DeePMD-kit differentiates its casts in bfloat16, we straight through in float32:
    # they agree to a few bfloat16 spacings of the largest force (measured 0.76 %, 2^-8 = 0.39 %)
    scale = np.abs(ref["force"]).max()
    assert np.abs(f1 - ref["force"]).max() < 4 * 2.0 ** -8 * scale
    np.testing.assert_allclose(v1, ref["virial"], rtol=0, atol=4 * 2.0 ** -8 * np.abs(ref["virial"]).max())


def test_deepmd_kit_frozen_graph_keeps_its_mixed_precision(ref):
    """The .pb stores the training input: its training/mixed_precision is read back, so the graph
    imports as the rounded model (the same numbers as the .dp with the setting applied)."""
    from deepmd_paddle.io.tf_graph import load_pb

    model = load_pb(str(HERE / "bf16.pb"))
    assert model.mixed_precision == BF16 and model.descriptor.precision == "float32"
    e, f, _ = DeepPot(model).eval(ref["coord"], ref["cell"], ref["atype"])
    e1, f1, _ = DeepPot(load_dp(str(HERE / "bf16.dp")).with_mixed_precision(BF16)).eval(ref["coord"], ref["cell"],
                                                                                          ref["atype"])
    np.testing.assert_allclose(e, e1, rtol=1e-12)
    np.testing.assert_allclose(f, f1, rtol=0, atol=1e-9)
    assert np.abs(e - ref["energy"]).max() < np.abs(ref["plain_energy"] - ref["energy"]).min() / 2
