"""The fused training step (train/fused_step.py) in float32 equals autograd through the Paddle
layers in float32: the loss, its parts and the gradient of every weight. These are the float64
tests of the fused step (tests/test_model.py, test_exclude_types.py, test_fparam_model.py,
test_trainkeys.py, test_type_embedding.py) with both nets in float32.

The tolerance. The two paths compute the same sums in different orders (the C++ passes
accumulate per atom and per neighbour block, Paddle's GEMMs in its own blocks), each rounding to
u = 2^-24 ~ 6.0e-8 relative per operation; a gradient entry is a sum over the batch's atoms and
neighbours (a few thousand terms here) of products of several rounded factors, and differences of
nearly equal terms cancel in it. We assert the loss to 1e-5 relative and each weight's gradient
to 1e-4 relative plus 5e-6 (~84 u) of that weight's largest gradient entry; measured, the largest
difference is 1.3e-6 (~22 u) of a weight's largest entry, 3 % of the tolerance at most (float64
passes at 1e-10). What the tolerance must catch is a missing term or a wrong precision in one
pass: that is off by the size of the term (> 1e-2 of the gradient).
"""
import numpy as np
import paddle
import pytest

from conftest import loss_batch, make_small_model, random_system, small_model_config, to_tensors
from deepmd_paddle.kernels.build import load_library

pytestmark = pytest.mark.skipif(load_library() is None, reason="the C++ operators are not available")
LOSS_RTOL, GRAD_RTOL, GRAD_ATOL = 1e-5, 1e-4, 5e-6


def _compare(make, batch, loss_fn, extra=None):
    """Autograd (``make()``, Paddle layers) against the fused step (another ``make()``), same
    weights; ``extra``: keyword arguments of the model call (fparam, aparam)."""
    from deepmd_paddle.train import fused_step

    extra = extra or {}
    ref = make()
    ref.descriptor.prefer_fused_training = False
    assert {str(p.dtype) for p in ref.parameters()} == {"paddle.float32"}
    out = ref(batch["coord"], batch["atype"], batch["box"], create_graph=True, **extra)
    loss_ref, l2_ref = loss_fn(out, batch, 5e-4)
    loss_ref.backward()
    m = make()
    assert fused_step.supported(m)
    loss, l2 = fused_step.step(m, loss_fn, batch, 5e-4)
    assert float(loss) == pytest.approx(float(loss_ref), rel=LOSS_RTOL)
    for k in l2_ref:
        assert l2[k] == pytest.approx(l2_ref[k], rel=LOSS_RTOL), k
    n = 0
    for (name, p), q in zip(m.named_parameters(), ref.parameters()):
        if q.grad is None:  # (nets of excluded pairs, unused type vectors)
            assert p.grad is None or not np.any(p.grad.numpy()), name
            continue
        want = q.grad.numpy()
        assert p.grad is not None and p.grad.dtype == paddle.float32, name
        np.testing.assert_allclose(p.grad.numpy(), want, rtol=GRAD_RTOL, atol=GRAD_ATOL * np.abs(want).max(),
                                   err_msg=name)
        n += 1
    assert n >= 8


@pytest.mark.parametrize("type_one_side,resnet_dt,kind,cache_mb", [
    (True, False, "triclinic", "512"), (False, True, "ortho", "0"), (True, True, "open", "512")])
def test_fused_step_float32(type_one_side, resnet_dt, kind, cache_mb, monkeypatch):
    """test_model.py's cases (with and without the G, dG/ds cache) in float32."""
    monkeypatch.setenv("DEEPMD_PADDLE_EMBED_CACHE_MB", cache_mb)
    batch, loss_fn = loss_batch(*random_system(14, 2, kind, seed=21))
    _compare(lambda: make_small_model(True, type_one_side=type_one_side, resnet_dt=resnet_dt, precision="float32"),
             batch, loss_fn)


@pytest.mark.parametrize("type_one_side,tebd", [(False, False), (True, False), (True, True)])
def test_fused_step_float32_exclude_types(type_one_side, tebd):
    from test_exclude_types import _model

    batch, loss_fn = loss_batch(*random_system(14, 2, "ortho", seed=21))
    _compare(lambda: _model(True, [[0, 1]], type_one_side, precision="float32", type_embedding=tebd), batch, loss_fn)


@pytest.mark.parametrize("tebd", [None, {"neuron": [4], "seed": 5}])
def test_fused_step_float32_with_parameters(tebd):
    from deepmd_paddle import config
    from deepmd_paddle.model import EnergyModel

    def make():
        cfg = small_model_config(precision="float32")
        cfg["fitting_net"].update(numb_fparam=2, numb_aparam=1)
        if tebd:
            cfg["type_embedding"] = dict(tebd)
        model = EnergyModel.from_config(config.normalize_model(cfg))
        ref = make_small_model(True)
        model.descriptor.set_stat(ref.descriptor.davg.numpy(), ref.descriptor.dstd.numpy())
        model.fitting.set_bias([-1.0, -0.5])
        model.fitting.inputs.set_stats({"fparam": ([0.5, 1.0], [2.0, 0.5]), "aparam": ([0.1], [3.0])})
        model.set_kernels(ref.kernels)
        return model

    batch, loss_fn = loss_batch(*random_system(14, 2, "triclinic", seed=21))
    rng = np.random.default_rng(5)
    batch["fparam"] = paddle.to_tensor(rng.uniform(size=(2, 2)))
    batch["aparam"] = paddle.to_tensor(rng.uniform(size=(2, 14, 1)))
    _compare(make, batch, loss_fn, {"fparam": batch["fparam"], "aparam": batch["aparam"]})


@pytest.mark.parametrize("relative_f,coeff", [(0.5, True), (None, False)])
def test_fused_step_float32_every_loss_term(relative_f, coeff):
    from test_trainkeys import PREFS

    from deepmd_paddle.train.loss import EnerLoss

    coord, atype, cell = random_system(14, 2, "triclinic", seed=4)
    nf, n = atype.shape
    rng = np.random.default_rng(5)
    c, a, b = to_tensors(coord, atype, cell)
    labels = {"energy": (nf, 1), "force": (nf, n, 3), "virial": (nf, 9), "atom_ener": (nf, n), "atom_pref": (nf, n)}
    batch = {"coord": c, "atype": a, "box": b, "natoms": n,
             **{k: paddle.to_tensor(rng.uniform(0.5, 2.0, s)) for k, s in labels.items()},
             **{f"find_{k}": 1.0 for k in labels},
             "atom_ener_coeff": paddle.to_tensor(rng.choice([1.0, -1.0, 0.5], (nf, n))), "find_atom_ener_coeff": 1.0}
    loss_fn = EnerLoss(1e-3, **PREFS, relative_f=relative_f, enable_atom_ener_coeff=coeff)
    _compare(lambda: make_small_model(True, precision="float32"), batch, loss_fn)


@pytest.mark.parametrize("spec,one_side", [
    pytest.param(True, False, id="properties-centre"),
    pytest.param({"neuron": [2]}, False, id="learned"),
    pytest.param(("model", {"neuron": [2, 4], "use_tebd_bias": False}), False, id="deepmd-kit-model")])
def test_fused_step_float32_type_embedding(spec, one_side):
    from test_type_embedding import te_model, three_types

    batch, loss_fn = loss_batch(*three_types(12, 2, seed=9, kind="triclinic"), seed=4)
    _compare(lambda: te_model(spec, one_side, use_op=True, precision="float32"), batch, loss_fn)
