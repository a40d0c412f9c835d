"""Every kernel of the table (``deepmd_paddle.kernels.TABLE``): the C++ operator equals its
plain-Paddle twin in values, in gradients where the operator gives them (``grad >= 1``) and in
double gradients (``grad >= 2``). The training passes without a twin of their own (vjp, ggt,
pgrad) are held to autograd through the ``embed`` twin."""
from __future__ import annotations

import numpy as np
import paddle
import pytest

from conftest import make_small_model, random_system, to_tensors
from deepmd_paddle.kernels import TABLE, backend, twins
from deepmd_paddle.kernels.build import load_library

pytestmark = pytest.mark.skipif(load_library() is None, reason="the C++ operators are not available here")
RNG = np.random.default_rng(7)


def _model(**kw):
    return make_small_model(True, sel=(10, 20), **kw)


def _frame(kind="triclinic"):
    m = _model()
    c, a, b = to_tensors(*random_system(14, 2, kind, seed=3))
    nlist, shift, _, _ = m.descriptor.neighbor_list(c, a, b)
    return m, c, a, b, nlist, shift


def _embed_inputs(type_one_side=False, resnet_dt=True):
    m = _model(type_one_side=type_one_side, resnet_dt=resnet_dt)
    c, a, b = to_tensors(*random_system(14, 2, "triclinic", seed=3))
    nlist, shift, _, _ = m.descriptor.neighbor_list(c, a, b)
    rij = twins.build_rij(c, nlist, shift)
    env = m.descriptor.env_mat(rij, nlist, a).reshape([-1, m.descriptor.nnei, 4])
    env = paddle.gather(env, paddle.nonzero(a.reshape([-1]) == 1).reshape([-1]))  # centre type 1
    params = [p.detach() for p in m.descriptor.fused_params(1)]
    return env.detach(), params, m.descriptor.fused_attrs()


def _random(*shape):
    return paddle.to_tensor(RNG.normal(size=shape))


def _inputs(name):
    """(positional inputs, indices of the differentiable ones, attributes) for kernel ``name``."""
    if name == "neighbor_list":
        m, c, a, b, _, _ = _frame()
        return [c, b, a], [], [m.descriptor.rcut, m.descriptor.sel]
    if name == "build_rij":
        _, c, _, _, nlist, shift = _frame()
        centre = paddle.to_tensor([5, 0, 3], dtype="int64")
        return [c, paddle.gather(nlist, centre, axis=1), paddle.gather(shift, centre, axis=1), centre], [], []
    if name == "env_mat":
        m, c, a, _, nlist, shift = _frame()
        d = m.descriptor
        return [twins.build_rij(c, nlist, shift), nlist, a, d.davg, d.dstd], [0], [d.rcut, d.rcut_smth]
    if name == "env_mat_excl":
        from deepmd_paddle.model.options import slot_mask

        m, c, a, _, nlist, shift = _frame()
        d = m.descriptor
        emask = paddle.to_tensor(slot_mask([[0, 1]], d.sel))
        return [twins.build_rij(c, nlist, shift), nlist, a, d.davg, d.dstd, emask], [0], [d.rcut, d.rcut_smth]
    if name == "prod_force_virial":
        _, c, _, _, nlist, shift = _frame("small")
        centre = paddle.to_tensor([5, 0, 3, 11], dtype="int64")
        nl, sh = paddle.gather(nlist, centre, axis=1), paddle.gather(shift, centre, axis=1)
        rij = twins.build_rij(c, nl, sh, centre)
        g = _random(*rij.shape) * (nl >= 0).astype("float64").unsqueeze(-1)  # padded slots carry g = 0
        return [c, g, rij, nl, centre], [], []
    if name == "bias_tanh":
        return [_random(6, 5, 8), _random(8)], [0, 1], []
    if name == "descriptor":
        return [_random(9, 16, 4)], [0], [4]
    if name == "fitting_ener":  # the fitting net of centre type 1 (timestep layers, resnet)
        params, flags = _model(resnet_dt=True).fitting.fused_params(1)
        return [_random(7, params[0].shape[0]), [p.detach() for p in params]], [0, 1], [flags]
    if name == "round_delta":  # (no gradient: the caller adds it as a constant)
        return [_random(40, 7) * 1e3], [], ["float16"]
    if name == "tabulate":
        from deepmd_paddle.model.tabulate import compress_model

        m = compress_model(_model().eval(), 0.05, 2.0, 5, min_nbor_dist=0.9)
        tab = m.descriptor.tabulation
        env, _, _ = _embed_inputs()
        return [env, tab.coef, tab.info], [0], [tab.sel, 1, tab.type_one_side, tab.ng]
    env, params, attrs = _embed_inputs()
    return [env, params], [0, 1] if name == "embed_train" else [0], list(attrs)


def _flat(out):
    return [o for o in (out if isinstance(out, (list, tuple)) else [out]) if o is not None]


def _grads(fn, inputs, diff, order):
    """Values of ``fn``, its gradient along random cotangents and, for order 2, the gradient of
    <that gradient, random direction> (the double gradient). ``diff`` may name a list input
    (the nets' weights): each of its tensors is differentiated."""
    inputs = [x.detach() if isinstance(x, paddle.Tensor) else [p.detach() for p in x] if isinstance(x, list) else x
              for x in inputs]
    wrt = [t for i in diff for t in (inputs[i] if isinstance(inputs[i], list) else [inputs[i]])]
    for t in wrt:
        t.stop_gradient = False
    outs = _flat(fn(*inputs))
    res = [o.numpy() for o in outs]
    if order == 0 or not diff:
        return res
    rng = np.random.default_rng(1)
    floats = [o for o in outs if o.dtype in (paddle.float32, paddle.float64)]
    loss = sum((o * paddle.to_tensor(rng.normal(size=o.shape), dtype=o.dtype)).sum() for o in floats)
    g = paddle.grad(loss, wrt, create_graph=order > 1, allow_unused=True)
    res += [x.numpy() for x in g if x is not None]
    if order > 1:
        direction = [paddle.to_tensor(rng.normal(size=x.shape)) for x in g]
        gg = paddle.grad(sum((x * d).sum() for x, d in zip(g, direction)), wrt, allow_unused=True)
        res += [x.numpy() for x in gg if x is not None]
    return res


@pytest.mark.parametrize("name", [n for n, k in TABLE.items() if k.twin is not None])
def test_kernel_equals_twin(name):
    spec = TABLE[name]
    assert backend("cpp").has(name), f"{spec.op} is not in the built library"
    inputs, diff, attrs = _inputs(name)

    def run(fn):  # (the cache of embed_cached is the operator's own: T alone is compared)
        return _grads(lambda *x: fn(*x, *attrs)[0] if name == "embed_cached" else fn(*x, *attrs), inputs, diff,
                      spec.grad)

    got, want = run(spec.cpp), run(spec.twin)
    assert len(got) == len(want) >= 1
    for g, w in zip(got, want):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12 * max(1.0, np.abs(w).max()))


@pytest.mark.parametrize("type_one_side,resnet_dt", [(True, False), (False, True)])
def test_training_passes_equal_autograd_of_the_embed_twin(type_one_side, resnet_dt):
    env, params, attrs = _embed_inputs(type_one_side, resnet_dt)
    k = backend("cpp")
    t, cache = k.embed_cached(env, params, *attrs)
    gt, a, tbar = _random(*t.shape), _random(*env.shape), _random(*t.shape)
    x = env.detach()
    x.stop_gradient = False
    ps = [p.detach() for p in params]
    for p in ps:
        p.stop_gradient = False
    tw = twins.embed(x, ps, *attrs)
    (vjp,) = paddle.grad((tw * gt).sum(), x, create_graph=True)  # dE/dR~ = J^T gT
    gt_var = gt.detach()
    gt_var.stop_gradient = False
    (vjp_var,) = paddle.grad((twins.embed(x, ps, *attrs) * gt_var).sum(), x, create_graph=True)
    (ggt,) = paddle.grad((vjp_var * a).sum(), gt_var, create_graph=True)  # J a
    pgrad = paddle.grad((tw * tbar).sum() + (vjp * a).sum(), ps)
    np.testing.assert_allclose(k.embed_vjp(env, params, gt, cache, *attrs).numpy(), vjp.numpy(), rtol=1e-10,
                               atol=1e-13)
    np.testing.assert_allclose(k.embed_ggt(env, params, a, cache, *attrs).numpy(), ggt.numpy(), rtol=1e-10,
                               atol=1e-13)
    flat = k.embed_pgrad(env, params, tbar, gt, a, *attrs).numpy()
    want = np.concatenate([g.numpy().reshape(-1) for g in pgrad])
    np.testing.assert_allclose(flat, want, rtol=1e-10, atol=1e-12 * np.abs(want).max())


def test_backends_choose_once():
    """The paddle backend runs twins only; static leaves out operators that may not enter a
    frozen graph; a derivative the operator does not give falls back to the twin."""
    cpp, pd, static = backend("cpp"), backend("paddle"), backend("static")
    assert not pd.native and pd.env_mat is twins.env_mat
    assert cpp.env_mat is TABLE["env_mat"].cpp and cpp.get("build_rij", order=1) is twins.build_rij
    assert cpp.get("tabulate", dtype=paddle.float32) is twins.tabulate  # (its tables are float64)
    assert {"embed_vjp", "embed_ggt", "embed_pgrad"} <= cpp.native and not static.native & {"embed_vjp", "embed_pgrad"}
    with pytest.raises(RuntimeError, match="no plain-Paddle twin"):
        pd.get("embed_vjp")


def test_descriptor_in_float32_equals_float64():
    """se_a_descriptor in float32 (no float64 round trip) equals float64 to float32's precision,
    with its gradient and double gradient."""
    k = backend("cpp")
    assert k.has("descriptor")
    t64 = paddle.to_tensor(RNG.normal(size=(6, 12, 4)))
    gd, gg = RNG.normal(size=(6, 12, 5)), RNG.normal(size=(6, 12, 4))

    def run(dt):
        t = t64.astype(dt).detach()
        t.stop_gradient = False
        fn = k.get("descriptor", order=2, dtype=t.dtype)
        assert fn is TABLE["descriptor"].cpp  # the operator itself, not its twin
        d = fn(t, 5)
        (g,) = paddle.grad(d, t, grad_outputs=paddle.to_tensor(gd, dtype=dt), create_graph=True)
        (g2,) = paddle.grad((g * paddle.to_tensor(gg, dtype=dt)).sum(), t)
        return [x.numpy() for x in (d, g, g2)]

    for a, b in zip(run("float32"), run("float64")):
        assert a.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6 * np.abs(b).max())
