"""se_a_embed_tape (T, the G/G' cache and the nets' activations in one forward pass) and
se_a_embed_pgrad reading that tape instead of evaluating the nets again: T and the cache equal
se_a_embed_cached's, the vjp/ggt passes on its cache equal those on embed_cached's, and the
weight gradient from the tape is the one pgrad computes without it, bit for bit (the tape holds
exactly what pgrad's own forward pass records), in float64, float32 and a bfloat16-rounded net;
above the memory budget the tape is empty and pgrad evaluates the nets as before."""
import numpy as np
import paddle
import pytest

from deepmd_paddle.kernels import backend, twins
from deepmd_paddle.kernels.build import load_library

pytestmark = pytest.mark.skipif(load_library() is None, reason="the C++ operators are not available here")


def _inputs(prec, type_one_side):
    from test_kernels import _embed_inputs

    env, params, (sel, nlayer, timestep) = _embed_inputs(type_one_side, True)
    return env.astype(prec), [p.astype(prec) for p in params], sel, nlayer, timestep


@pytest.mark.parametrize("prec,rounding", [("float64", None), ("float32", None), ("float32", "bfloat16")])
@pytest.mark.parametrize("type_one_side", [False, True])
def test_tape_passes_equal_the_cached_ones(prec, rounding, type_one_side):
    env, params, sel, nlayer, timestep = _inputs(prec, type_one_side)
    attrs = (sel, twins.nlayer_code(nlayer, rounding), timestep)
    k = backend("cpp")
    t_ref, cache_ref = k.embed_cached(env, params, *attrs)
    t, cache, tape = k.embed_tape(env, params, *attrs)
    assert tape.shape[0] == env.shape[0] and tape.shape[1] == env.shape[1]
    tol = 1e-12 if prec == "float64" else 1e-5
    np.testing.assert_allclose(t.numpy(), t_ref.numpy(), rtol=tol, atol=tol * np.abs(t_ref.numpy()).max())
    rng = np.random.default_rng(3)
    gt = paddle.to_tensor(rng.normal(size=t.shape).astype(prec))
    a = paddle.to_tensor(rng.normal(size=env.shape).astype(prec))
    tbar = paddle.to_tensor(rng.normal(size=t.shape).astype(prec))
    for name, arg in (("embed_vjp", gt), ("embed_ggt", a)):
        want = getattr(k, name)(env, params, arg, cache_ref, *attrs).numpy()
        got = getattr(k, name)(env, params, arg, cache, *attrs).numpy()
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(want).max(), err_msg=name)
    want = k.embed_pgrad(env, params, tbar, gt, a, *attrs).numpy()
    assert np.array_equal(k.embed_pgrad(env, params, tbar, gt, a, *attrs, tape=tape).numpy(), want)
    empty = paddle.zeros([0], prec)  # the energy term alone, and the force term alone
    for tb, g, aa in ((tbar, empty, empty), (empty, gt, a)):
        assert np.array_equal(k.embed_pgrad(env, params, tb, g, aa, *attrs, tape=tape).numpy(),
                              k.embed_pgrad(env, params, tb, g, aa, *attrs).numpy())


def test_tape_over_budget_is_empty_and_a_foreign_tape_is_refused(monkeypatch):
    env, params, sel, nlayer, timestep = _inputs("float64", False)
    k = backend("cpp")
    _, _, tape = k.embed_tape(env, params, sel, nlayer, timestep)
    with pytest.raises(Exception, match="Tape must come from se_a_embed_tape"):
        k.embed_pgrad(env[:-1], params, paddle.zeros([0], "float64"), paddle.zeros([0], "float64"),
                      paddle.zeros([0], "float64"), sel, nlayer, timestep, tape=tape)
    monkeypatch.setenv("DEEPMD_PADDLE_EMBED_CACHE_MB", "0")
    t, cache, tape = k.embed_tape(env, params, sel, nlayer, timestep)
    assert cache.shape[0] == 0 and tape.shape[0] == 0
    tbar = paddle.to_tensor(np.random.default_rng(1).normal(size=t.shape))
    e = paddle.zeros([0], "float64")
    assert np.array_equal(k.embed_pgrad(env, params, tbar, e, e, sel, nlayer, timestep, tape=tape).numpy(),
                          k.embed_pgrad(env, params, tbar, e, e, sel, nlayer, timestep).numpy())
