"""``atom_ener`` (fixed energies of isolated atoms, DeePMD-kit's TensorFlow definition): the
energy bias of such a type is that energy, the others are fitted to the rest; after training an
isolated atom of that type still has it exactly (with ``set_davg_zero``: its descriptor is 0,
and ``N(0) - N(0) = 0``). Parity with DeePMD-kit: tests/test_types_parity.py."""
import numpy as np
import paddle
import pytest

from deepmd_paddle.data.stats import energy_bias
from deepmd_paddle.kernels.build import load_library
from deepmd_paddle.train.trainer import FUSED_ENV, Trainer
from test_trainable import _config, emt  # noqa: F401 (the fixture)


def test_energy_bias_with_assigned_types():
    """E = 3 b0 + 2 b1 per frame with b0 fixed at -2: b1 is the least-squares fit of the rest."""
    rng = np.random.default_rng(0)
    counts = rng.integers(1, 6, (7, 2)).astype(float)
    energy = counts @ np.array([-1.0, -3.0]) + rng.normal(0, 0.01, 7)
    b = energy_bias(energy, counts, None, [-2.0, None])
    assert b[0] == -2.0
    rest = energy + 2.0 * counts[:, 0]
    assert b[1] == pytest.approx(float(counts[:, 1] @ rest / (counts[:, 1] @ counts[:, 1])), rel=1e-12)
    np.testing.assert_allclose(energy_bias(energy, counts), np.linalg.lstsq(counts, energy, rcond=None)[0])


@pytest.mark.parametrize("fused", ["1", "0"])
def test_isolated_atom_keeps_its_energy_through_training(emt, tmp_path, monkeypatch, fused):
    if fused == "1" and load_library() is None:
        pytest.skip("the C++ operators are not available")
    monkeypatch.setenv(FUSED_ENV, fused)
    cfg = _config(emt, descriptor={"set_davg_zero": True}, fitting={"atom_ener": [-1.5, None]})
    trainer = Trainer(cfg, str(tmp_path))
    assert trainer.model.fitting.bias_atom_e.numpy()[0] == -1.5
    trainer.run()
    m = trainer.model
    for p in m.parameters():
        p.stop_gradient = True
    lone = m(paddle.zeros([1, 1, 3], "float64"), paddle.to_tensor([[0]], "int32"))
    assert float(lone["energy"].numpy()[0, 0]) == -1.5
    other = m(paddle.zeros([1, 1, 3], "float64"), paddle.to_tensor([[1]], "int32"))
    assert float(other["energy"].numpy()[0, 0]) != float(m.fitting.bias_atom_e.numpy()[1])  # N(0) kept there
