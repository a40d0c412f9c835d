"""Mixed precision in the embedding kernels (custom_ops/round_prec.h, embed_net.h): the nets'
operands and results rounded to bfloat16 or float16 where DeePMD-kit's mixed precision casts and
computes, in the C++ operators and in their plain-Paddle twin."""
from __future__ import annotations

import numpy as np
import paddle
import pytest

from deepmd_paddle.kernels import backend, twins
from deepmd_paddle.kernels.build import load_library

pytestmark = pytest.mark.skipif(load_library() is None, reason="the C++ operators are not available here")

SEL, NEURON = [5, 7], [4, 8, 16]


def bf16(x):
    """bfloat16 by its definition: round to nearest even on float32's upper 16 bits."""
    u = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000).astype(np.uint32).view(np.float32)


def rnd(x, mode, dt):
    narrow = {1: bf16, 2: lambda v: np.asarray(v, dt).astype(np.float16), 3: lambda v: np.asarray(v, np.float32)}
    return narrow[mode](x).astype(dt)


def _nets(dt, seed=0):
    rng = np.random.default_rng(seed)
    nets, params = [], []
    for _ in SEL:
        layers, n_in = [], 1
        for n in NEURON:
            w, b = rng.normal(size=(n_in, n)).astype(dt), rng.normal(size=n).astype(dt)
            idt = rng.normal(1, 0.1, size=n).astype(dt) if n in (n_in, 2 * n_in) else None
            layers.append((w, b, idt))
            params += [w, b] + ([idt] if idt is not None else [])
            n_in = n
        nets.append(layers)
    env = rng.normal(size=(3, sum(SEL), 4)).astype(dt)
    env[0, :4, 0] = [1 + 2 ** -8, 1 + 3 * 2 ** -8, -(1 + 2 ** -11), 2 ** -20]  # ties of both formats, a small value
    return nets, params, env


def reference(nets, env, mode, dt):
    """T with every cast of DeePMD-kit's mixed-precision embedding net, in NumPy."""
    out = np.zeros((env.shape[0], NEURON[-1], 4))
    for i in range(env.shape[0]):
        off = 0
        for t, n in enumerate(SEL):
            for j in range(n):
                r = env[i, off + j]
                x = rnd(r[:1], mode, dt)
                for w, b, idt in nets[t]:
                    z = rnd(rnd((x.astype(float) @ rnd(w, mode, dt).astype(float)).astype(dt), mode, dt)
                            + rnd(b, mode, dt), mode, dt)
                    y = rnd(np.tanh(z.astype(float)).astype(dt), mode, dt)
                    if idt is not None:
                        y = rnd(y * rnd(idt, mode, dt), mode, dt)
                    if w.shape[1] in (w.shape[0], 2 * w.shape[0]):
                        y = rnd(y + np.tile(x, w.shape[1] // w.shape[0]), mode, dt)
                    x = y
                out[i] += np.outer(x.astype(float), r.astype(float))
            off += n
    return out / sum(SEL)


@pytest.mark.parametrize("dt,prec", [(d, p) for d in ("float32", "float64") for p in ("bfloat16", "float16")]
                         + [("float64", "float32")])
def test_rounded_nets_equal_their_definition(dt, prec):
    nets, params, env = _nets(dt)
    mode = twins.ROUND_MODES[prec]
    want = reference(nets, env, mode, dt)
    code = twins.nlayer_code(len(NEURON), prec)
    args = (paddle.to_tensor(env), [paddle.to_tensor(p) for p in params], SEL)
    scale = np.abs(want).max()
    tol = 2e-7 if dt == "float32" else 1e-14  # (float32: tanh and sums within a few ulp before rounding)
    for fn in (backend("cpp").embed, twins.embed):
        got = fn(*args, code, True).numpy()
        assert np.abs(got - want).max() <= tol * scale
    unrounded = backend("cpp").embed(*args, len(NEURON), True).numpy()
    assert np.abs(unrounded - want).max() > (1e-4 if prec != "float32" else 1e-9) * scale  # the rounding matters


@pytest.mark.parametrize("prec", ["bfloat16", "float16"])
def test_rounded_training_passes_follow_the_rounded_twin(prec):
    """The fused passes' derivatives are straight-through (each rounding taken as the identity),
    as autograd's through the twin's rounded graph: equal to float64 rounding, while the unrounded
    kernels are off by the rounding's precision."""
    nets, params, env = _nets("float64", seed=2)
    code = twins.nlayer_code(len(NEURON), prec)
    env_t, ps = paddle.to_tensor(env), [paddle.to_tensor(p) for p in params]
    k = backend("cpp")
    rng = np.random.default_rng(4)
    t, _ = k.embed_cached(env_t, ps, SEL, code, True)
    gt = paddle.to_tensor(rng.normal(size=t.shape))
    a, tbar = paddle.to_tensor(rng.normal(size=env.shape)), paddle.to_tensor(rng.normal(size=t.shape))
    x = env_t.detach()
    x.stop_gradient = False
    wrt = [p.detach() for p in ps]
    for p in wrt:
        p.stop_gradient = False
    tw = twins.embed(x, wrt, SEL, code, True)
    (vjp,) = paddle.grad((tw * gt).sum(), x, create_graph=True)
    pgrad = paddle.grad((tw * tbar).sum() + (vjp * a).sum(), wrt)
    want = [vjp.numpy(), np.concatenate([g.numpy().reshape(-1) for g in pgrad])]

    def passes(c):
        t, cache = k.embed_cached(env_t, ps, SEL, c, True)
        return [k.embed_vjp(env_t, ps, gt, cache, SEL, c, True).numpy(),
                k.embed_pgrad(env_t, ps, tbar, gt, a, SEL, c, True).numpy()]

    rounded, plain = passes(code), passes(len(NEURON))
    for r, p, w in zip(rounded, plain, want):
        err_r, err_p = np.abs(r - w).max() / np.abs(w).max(), np.abs(p - w).max() / np.abs(w).max()
        assert err_r < 1e-11 and err_p > 1e-5, (err_r, err_p)
