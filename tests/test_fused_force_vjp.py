"""fused_step.force_virial_vjp: dL/dg of the force/virial product, written by hand, equals
autograd through the product's plain-Paddle twin (kernels/twins.py), with padded slots and two
frames, for a loss on forces, on the virial, and on both; float64 to 1e-12 and float32 to
test_float32_fused_step.py's tolerance. The forward product of the C++ operator equals the twin's."""
import numpy as np
import paddle
import pytest

from conftest import make_small_model, random_system, to_tensors
from deepmd_paddle.kernels import twins
from deepmd_paddle.train.fused_step import force_virial_vjp


def _pair_terms(prec):
    """(coord, g, rij, nlist) of a small two-frame system with padded neighbour slots."""
    model = make_small_model(True, precision=prec)
    coord, atype, cell = random_system(14, 2, "triclinic", seed=5)
    c, a, b = to_tensors(coord, atype, cell)
    coord, atype, box, nlist, shift, _ = model.prepare(c, a, b)
    rij, _, _ = model.centre_env(coord, atype, nlist, shift, None, order=1)
    assert int((nlist < 0).sum()) > 0  # padded slots present
    rng = np.random.default_rng(2)
    g = paddle.to_tensor(rng.normal(size=rij.shape))
    return coord, g, rij.detach().astype("float64"), nlist


@pytest.mark.parametrize("terms", ["force", "virial", "both"])
@pytest.mark.parametrize("prec,rtol", [("float64", 1e-12), ("float32", 1e-5)])
def test_vjp_equals_autograd_of_the_twin(terms, prec, rtol):
    coord, g, rij, nlist = _pair_terms(prec)
    g.stop_gradient = False
    force, virial, _ = twins.prod_force_virial(coord, g, rij, nlist, None, atomic=False)
    rng = np.random.default_rng(7)
    wf = paddle.to_tensor(rng.normal(size=force.shape))
    wv = paddle.to_tensor(rng.normal(size=virial.shape))
    loss = 0.0
    if terms in ("force", "both"):
        loss = loss + (force * force * wf).sum()
    if terms in ("virial", "both"):
        loss = loss + (virial * virial * wv).sum()
    (want,) = paddle.grad(loss, g)
    fbar = (2 * force * wf).detach() if terms != "virial" else None
    vbar = (2 * virial * wv).detach() if terms != "force" else None
    got = force_virial_vjp(fbar, vbar, rij, nlist)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=rtol, atol=rtol * np.abs(want.numpy()).max())
    assert force_virial_vjp(None, None, rij, nlist) is None


def test_cpp_product_equals_twin():
    from deepmd_paddle.kernels.build import load_library
    from deepmd_paddle.kernels import cpp

    if load_library() is None:
        pytest.skip("the C++ operators are not available")
    coord, g, rij, nlist = _pair_terms("float64")
    g = g * (nlist >= 0).astype(g.dtype).unsqueeze(-1)  # (g = dE/dr_ij is 0 on padded slots; the operator skips them)
    want = twins.prod_force_virial(coord, g, rij, nlist, None, atomic=False)
    got = cpp.prod_force_virial(coord, g, rij, nlist, None, atomic=False)
    for w, x in zip(want[:2], got[:2]):
        np.testing.assert_allclose(x.numpy(), w.numpy(), rtol=1e-12, atol=1e-12 * np.abs(w.numpy()).max())
