"""Mixed precision (training/mixed_precision; deepmd_paddle/model/mixed_precision.py): the rounding
against NumPy's float16 cast and a bit-level bfloat16 reference, the nets against a NumPy
re-implementation of DeePMD-kit's TensorFlow cast points, forces against the un-rounded model's,
float32-in-float32 equal to the plain model, and the setting kept through checkpoints, .dp and
frozen files (compress refuses it). DeePMD-kit's own example trains: tests/test_mixed_precision_train.py."""
import json

import numpy as np
import paddle
import pytest

from conftest import make_small_model, random_system
from deepmd_paddle.kernels import rounding
from deepmd_paddle.model import mixed_precision as mp


# ----------------------------------------------------------------------------- NumPy references
def bf16_bits(x):
    """float32 -> bfloat16 by bit manipulation (round to nearest even on the low 16 bits)."""
    x = np.asarray(x, np.float32)
    u = x.view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000).astype(np.uint32).view(np.float32)
    return np.where(np.isnan(x), x, r)


def round_ref(x, fmt):
    """Round float64 values to ``fmt`` with NumPy's frexp/rint (rint: ties to even)."""
    p, emin, top = rounding.FORMATS[fmt]
    x = np.asarray(x, np.float64)
    a = np.abs(x)
    _, e = np.frexp(a)  # a = m 2^e, m in [0.5, 1)
    ulp = np.ldexp(1.0, np.maximum(e - 1, emin) - (p - 1))
    with np.errstate(invalid="ignore"):
        r = np.rint(a / ulp) * ulp
    r = np.where(r > top, np.inf, r)
    return np.where(np.isnan(x), x, np.copysign(r, x))


def R(x, fmt):  # noqa: N802 (the cast of DeePMD-kit's graph)
    return np.asarray(x, np.float64).astype(np.float16).astype(np.float64) if fmt == "float16" else round_ref(x, fmt)


EDGES = np.array([0.0, 1.0, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -11, 1 + 3 * 2 ** -11, 65504.0, 65519.99, 65520.0,
                  1e5, np.inf, np.nan, 2.0 ** -24, 2.0 ** -25, 3 * 2.0 ** -26, 2.0 ** -14, 6e-8, 1e-40, 2.0 ** -133,
                  2.0 ** -134, 3 * 2.0 ** -135, 2.0 ** -126, 3.3895e38, 3.3896e38, 3.4e38])


def _values(dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(100000) * np.exp(rng.uniform(-30, 30, 100000))
    ties = (np.arange(1, 2000) + 0.5) * 2.0 ** -7  # exact bfloat16 ties at 1..16
    x = np.concatenate([x, ties, ties * 2.0 ** -3, EDGES, -EDGES])
    with np.errstate(over="ignore"):
        x = x.astype(dtype)
    p2 = np.ldexp(np.ones(1, dtype), np.arange(-149 if dtype == "float32" else -1074, 128))  # binade edges
    p2 = p2[p2 > 0]
    return np.concatenate([x, p2, np.nextafter(p2, 0), np.nextafter(p2, np.inf), -np.nextafter(p2, 0)])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_round_float16_equals_numpy_cast(dtype):
    x = _values(dtype)
    got = rounding.round_to(paddle.to_tensor(x), "float16").numpy()
    with np.errstate(over="ignore"):
        want = x.astype(np.float16).astype(dtype)
    assert got.dtype == x.dtype
    np.testing.assert_array_equal(got, want)
    assert np.isinf(got[x == 65520.0]).all() and (got[x == 65519.99] == 65504.0).all()


def test_round_bfloat16_equals_bit_reference():
    x = _values("float32")
    got = rounding.round_to(paddle.to_tensor(x), "bfloat16").numpy()
    np.testing.assert_array_equal(got, bf16_bits(x))
    np.testing.assert_array_equal(got, round_ref(x.astype(np.float64), "bfloat16").astype(np.float32))
    # float64 storage: rounded once (not via float32), overflow and subnormals as IEEE
    x64 = _values("float64")
    np.testing.assert_array_equal(rounding.round_to(paddle.to_tensor(x64), "bfloat16").numpy(),
                                  round_ref(x64, "bfloat16"))
    r = rounding.round_to(paddle.to_tensor(np.array([1 + 2 ** -8, 1 + 3 * 2 ** -8, 3 * 2.0 ** -135, 3.3963e38])),
                          "bfloat16").numpy()
    np.testing.assert_array_equal(r, [1.0, 1 + 2 ** -6, 2.0 ** -133, np.inf])  # ties to even; subnormal; overflow


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("fmt", ["bfloat16", "float16"])
def test_cpp_operator_equals_its_twin(dtype, fmt):
    from deepmd_paddle.kernels import default_backend

    kern = default_backend()
    if not kern.has("round_delta"):
        pytest.skip("the C++ operators are not built in this process")
    x = paddle.to_tensor(_values(dtype))
    got = (x + kern.round_delta(x, fmt)).numpy()
    np.testing.assert_array_equal(got, rounding.round_to(x, fmt).numpy())
    np.testing.assert_array_equal(kern.round_delta(x, fmt).numpy(), rounding.round_delta(x, fmt).numpy())


def test_straight_through_derivatives_are_the_identity():
    x = paddle.to_tensor(np.array([1.001, -2.3, 0.7]), stop_gradient=False)
    y = rounding.straight_through(x, "bfloat16")
    np.testing.assert_array_equal(y.numpy(), round_ref(x.numpy(), "bfloat16"))
    (g,) = paddle.grad((y ** 3).sum(), x, create_graph=True)
    np.testing.assert_allclose(g.numpy(), 3 * y.numpy() ** 2, rtol=1e-15)
    (gg,) = paddle.grad(g.sum(), x)
    np.testing.assert_allclose(gg.numpy(), 6 * y.numpy(), rtol=1e-15)


def test_float16_overflow_is_refused_by_name():
    net = make_small_model(precision="float64")
    mp.enable(net, {"output_prec": "float64", "compute_prec": "float16"})
    layer = net.fitting.nets[0].layers[0]
    with pytest.raises(FloatingPointError, match=r"fitting net layer 1: layer input .*65504.*float16"):
        layer(paddle.full([2, layer.w.shape[0]], 7e4, "float64"))


# ----------------------------------------------------------------------------- DeePMD-kit's cast points
def tf_embedding_net(x, layers, fmt):
    """deepmd/tf/utils/network.py embedding_net with mixed_prec: every op in compute_prec."""
    xx = x
    for L in layers:
        w, b = L.w.numpy(), L.b.numpy()
        xx = R(xx, fmt)
        hidden = R(np.tanh(R(R(xx @ R(w, fmt), fmt) + R(b, fmt), fmt)), fmt)
        if L.idt is not None:
            hidden = R(hidden * R(L.idt.numpy(), fmt), fmt)
        n_in, n_out = w.shape
        xx = R(xx + hidden, fmt) if n_out == n_in else R(np.concatenate([xx, xx], -1) + hidden, fmt) \
            if n_out == 2 * n_in else hidden
    return xx


def tf_fitting_net(x, layers, fmt):
    """deepmd/tf/fit/ener.py _build_lower + one_layer with mixed_prec: hidden layers in compute_prec
    (output cast back, the skip added in output_prec), the final layer in output_prec."""
    layer = x
    for L in layers[:-1]:
        w, b = L.w.numpy(), L.b.numpy()
        h = R(np.tanh(R(R(R(layer, fmt) @ R(w, fmt), fmt) + R(b, fmt), fmt)), fmt)
        if L.idt is not None:
            h = R(h * R(L.idt.numpy(), fmt), fmt)
        layer = layer + h if w.shape[0] == w.shape[1] else h
    last = layers[-1]
    return layer @ last.w.numpy() + last.b.numpy()


@pytest.mark.parametrize("fmt", ["bfloat16", "float16", "float32"])
def test_nets_round_where_deepmd_kit_casts(fmt):
    model = make_small_model(precision="float64", resnet_dt=True)  # embedding 1 -> 4 -> 8 -> 16, fitting 16, 16
    mp.enable(model, {"output_prec": "float64", "compute_prec": fmt})
    rng = np.random.default_rng(1)
    s = rng.uniform(-1.5, 3.0, (200, 1))
    emb = model.descriptor.embeddings[0]
    got = emb(paddle.to_tensor(s)).numpy()
    want = tf_embedding_net(s, list(emb.layers), fmt)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=0)
    d = rng.normal(0, 0.5, (50, model.descriptor.get_dim_out()))
    fit = model.fitting.nets[0]
    got = fit(paddle.to_tensor(d)).numpy()
    np.testing.assert_allclose(got, tf_fitting_net(d, list(fit.layers), fmt), rtol=1e-6, atol=0)
    # the rounding is real: without it the nets differ by about compute_prec's precision
    plain = make_small_model(precision="float64", resnet_dt=True)
    diff = np.abs(plain.fitting.nets[0](paddle.to_tensor(d)).numpy() - got).max() / np.abs(got).max()
    assert 2.0 ** -(rounding.FORMATS[fmt][0] + 8) < diff < 2.0 ** -4


def _eval(model, coord, atype, cell, dtype):
    out = model(paddle.to_tensor(coord.astype(dtype)), paddle.to_tensor(atype), paddle.to_tensor(cell.astype(dtype)))
    return out["energy"].numpy().ravel(), out["force"].numpy()


@pytest.mark.parametrize("fmt,out,tol", [("bfloat16", "float64", 16 * 2.0 ** -8), ("bfloat16", "float32", 16 * 2.0 ** -8),
                                         ("float16", "float64", 16 * 2.0 ** -11)])
def test_forces_are_the_unrounded_models_within_compute_precision(fmt, out, tol):
    """The forces of the rounded model (straight-through derivatives) against the un-rounded
    model's, whose forces equal central differences of its energy. Tolerance: 16 x compute_prec's
    relative spacing (2^-8 bfloat16, 2^-11 float16) of the largest force: each of the ~20 roundings
    on the way from s to E_i errs by half a spacing at most."""
    coord, atype, cell = random_system(24, seed=3)
    plain = make_small_model(use_op=None, precision="float64")
    e0, f0 = _eval(plain, coord, atype, cell, "float64")
    h, i = 1e-5, (5, 1)
    cp, cm = coord.copy(), coord.copy()
    cp[0][i] += h
    cm[0][i] -= h
    fd = -(_eval(plain, cp, atype, cell, "float64")[0] - _eval(plain, cm, atype, cell, "float64")[0]) / (2 * h)
    np.testing.assert_allclose(f0[0][i], fd[0], rtol=1e-7)
    mixed = make_small_model(use_op=None, precision=out)
    mp.enable(mixed, {"output_prec": out, "compute_prec": fmt})
    e1, f1 = _eval(mixed, coord, atype, cell, out)
    scale = np.abs(f0).max()
    err = np.abs(f1 - f0).max() / scale
    assert err < tol, (err, tol)
    assert err > tol / 2 ** 12  # it does round
    assert abs(e1[0] - e0[0]) / abs(e0[0]) < tol and np.isfinite(f1).all()


def test_float32_compute_in_float32_is_the_plain_model():
    coord, atype, cell = random_system(24, seed=4)
    plain = make_small_model(use_op=None, precision="float32")
    mixed = make_small_model(use_op=None, precision="float32")
    mp.enable(mixed, {"output_prec": "float32", "compute_prec": "float32"})
    for a, b in zip(_eval(plain, coord, atype, cell, "float32"), _eval(mixed, coord, atype, cell, "float32")):
        np.testing.assert_array_equal(a, b)
    assert mixed.mixed_precision == {"output_prec": "float32", "compute_prec": "float32"}


@pytest.mark.parametrize("fmt,out", [("bfloat16", "float32"), ("float16", "float64")])
def test_fused_kernels_round_as_the_layers(fmt, out):
    """The fused C++ evaluation (frozen weights) and training step round as the Paddle layers do
    (rounding.FUSED_KERNELS_ROUND; custom_ops/round_prec.h), or step aside when the switch is off."""
    from deepmd_paddle.train import fused_step
    from deepmd_paddle.train.loss import EnerLoss

    mixed = make_small_model(use_op=None, precision=out, type_one_side=True)
    mp.enable(mixed, {"output_prec": out, "compute_prec": fmt})
    if not mixed.kernels.has("embed_train"):
        pytest.skip("the C++ operators are not built in this process")
    assert rounding.FUSED_KERNELS_ROUND and fused_step.supported(mixed)
    coord, atype, cell = random_system(24, seed=5)
    e_layers, f_layers = _eval(mixed, coord, atype, cell, out)
    for p in mixed.parameters():
        p.stop_gradient = True
    assert mixed.descriptor.embedding_path(False) == "fused"
    e_fused, f_fused = _eval(mixed, coord, atype, cell, out)
    rtol = 1e-5 if out == "float32" else 1e-10  # (a value on a rounding boundary may still flip in float32)
    np.testing.assert_allclose(e_fused, e_layers, rtol=rtol)
    np.testing.assert_allclose(f_fused, f_layers, rtol=0, atol=50 * rtol * np.abs(f_layers).max())
    for p in mixed.parameters():
        p.stop_gradient = False
    # the fused training step's gradient equals autograd through the rounding layers
    loss_fn = EnerLoss(1e-3, start_pref_e=0.5, limit_pref_e=1.0, start_pref_f=10.0, limit_pref_f=1.0)
    b = {"coord": paddle.to_tensor(coord.astype(out)), "atype": paddle.to_tensor(atype),
         "box": paddle.to_tensor(cell.astype(out)), "natoms": 24,
         "energy": paddle.to_tensor(e_layers.reshape(-1, 1) + 0.3), "find_energy": 1.0,
         "force": paddle.to_tensor(f_layers.reshape(1, -1) * 0.9), "find_force": 1.0}
    loss_fn(mixed(b["coord"], b["atype"], b["box"], create_graph=True), b, 1e-3)[0].backward()
    want = [p.grad.numpy().copy() for p in mixed.parameters()]
    mixed.clear_gradients()
    fused_step.step(mixed, loss_fn, b, 1e-3)
    for g, w in zip([p.grad.numpy() for p in mixed.parameters()], want):
        np.testing.assert_allclose(g, w, rtol=0, atol=(1e-3 if out == "float32" else 1e-8) * max(1.0, np.abs(w).max()))
    rounding.FUSED_KERNELS_ROUND = False
    try:
        assert not fused_step.supported(mixed) and not mixed.descriptor.fused_ready()
    finally:
        rounding.FUSED_KERNELS_ROUND = True


# ----------------------------------------------------------------------------- config
def test_compute_prec_int8_refused_by_name(tmp_path):
    from deepmd_paddle import config
    from deepmd_paddle.config import ConfigError
    from deepmd_paddle.data.demo import write_system

    write_system(str(tmp_path / "s"), {"coord": np.random.default_rng(0).uniform(0, 6, (2, 12)),
                                       "box": np.tile(np.eye(3).ravel() * 6, (2, 1)), "energy": np.zeros(2)},
                 np.array([0, 1, 1, 0]), ["O", "H"])
    raw = {"model": {"type_map": ["O", "H"], "descriptor": {"type": "se_e2_a", "sel": [4, 4], "rcut": 3.0,
                                                          "rcut_smth": 0.5, "neuron": [4], "axis_neuron": 2},
                     "fitting_net": {"neuron": [4]}},
           "training": {"training_data": {"systems": [str(tmp_path / "s")]}, "numb_steps": 1,
                        "mixed_precision": {"output_prec": "float32", "compute_prec": "int8"}}}
    with pytest.raises(ConfigError, match=r"training/mixed_precision/compute_prec: got 'int8'; allowed: float16, "
                                          r"bfloat16, float32"):
        config.normalize(raw)
    raw["training"]["mixed_precision"] = {"output_prec": "float16", "compute_prec": "bfloat16"}
    with pytest.raises(ConfigError, match=r"training/mixed_precision/output_prec: got 'float16'; allowed: float32, float64"):
        config.normalize(raw)
    raw["training"]["mixed_precision"] = {"compute_prec": "bfloat16"}
    out = config.normalize(raw)["training"]["mixed_precision"]
    assert out == {"output_prec": "float32", "compute_prec": "bfloat16"}  # DeePMD-kit's default output_prec
    with pytest.raises(ValueError, match="compute_prec: got 'int8'"):
        mp.check_spec({"output_prec": "float32", "compute_prec": "int8"})


def test_section_takes_output_prec():
    from conftest import small_model_config

    sec = mp.model_section({"model": small_model_config(),
                            "training": {"mixed_precision": {"output_prec": "float32", "compute_prec": "bfloat16"}}})
    assert sec["descriptor"]["precision"] == sec["fitting_net"]["precision"] == "float32"
    assert "mixed_precision" not in mp.model_section({"model": dict(sec), "training": {}})  # training decides
    assert mp.model_section({"model": sec})["mixed_precision"]["compute_prec"] == "bfloat16"  # model-only: its record
