"""Model compression (deepmd_paddle.model.tabulate): tables, the se_a_tabulate operator and its
plain-Paddle twin, the compressed model against the uncompressed one, freezing, fine-tuning."""
import logging

import numpy as np
from deepmd_paddle.kernels import twins
from deepmd_paddle.kernels.build import load_library
import paddle
import pytest
from conftest import REFERENCE, make_small_model, needs_shared, random_system, to_tensors, kernels_for

from deepmd_paddle.model.tabulate import coefficients, compress_model, net_derivatives

needs_op = pytest.mark.skipif(not (load_library() is not None) or not hasattr(load_library(), "se_a_tabulate"),
                              reason="the C++ operators are not available")
MIN_DIST = 0.9  # random_system's separation


def _small(order=5, stride=0.01, **kw):
    model = make_small_model(use_op=None, **kw).eval()
    return compress_model(model, stride, 5.0, order, min_nbor_dist=MIN_DIST)


def _eval(model, coord, atype, cell, create_graph=False):
    c, a, b = to_tensors(coord, atype, cell)
    return model(c, a, b, create_graph=create_graph)


def _energy(model, coord, atype, cell) -> float:
    return float(_eval(model, coord, atype, cell)["energy"].numpy().ravel()[0])


# ----------------------------------------------------------------------------- the polynomials
def test_net_derivatives_are_exact():
    """Forward-mode first and second derivatives of a net with residual and timestep layers
    against central differences of its own values."""
    net = make_small_model(resnet_dt=True).descriptor.embeddings[0]
    x = np.linspace(-1.0, 4.0, 7)
    y, dy, d2y = net_derivatives(net, x)
    with paddle.no_grad():
        assert np.allclose(y, net(paddle.to_tensor(x.reshape(-1, 1))).numpy(), atol=1e-14)
    h = 1e-5
    yp, dyp, _ = net_derivatives(net, x + h)
    ym, dym, _ = net_derivatives(net, x - h)
    assert np.allclose(dy, (yp - ym) / (2 * h), atol=1e-9)
    assert np.allclose(d2y, (dyp - dym) / (2 * h), atol=1e-8)


@pytest.mark.parametrize("order", [5, 3])
def test_coefficients_match_at_grid_points(order):
    """Each interval's polynomial reproduces value, first (and, 5th order, second) derivative of
    the net at both of its ends."""
    net = make_small_model(resnet_dt=False).descriptor.embeddings[1]
    x = np.array([-0.3, -0.2, -0.1, 0.0, 0.1, 0.6, 1.1])  # two strides, as the real tables have
    y, dy, d2y = net_derivatives(net, x)
    c = coefficients(x, y, dy, d2y, order)  # nint x K x ng
    k = c.shape[1]
    for end, at in ((0, x[:-1]), (1, x[1:])):
        t = (x[1:] - x[:-1])[:, None] * end
        val = sum(c[:, p] * t ** p for p in range(k))
        der = sum(p * c[:, p] * t ** (p - 1) for p in range(1, k))
        sec = sum(p * (p - 1) * c[:, p] * t ** (p - 2) for p in range(2, k))
        idx = slice(0, -1) if end == 0 else slice(1, None)
        assert np.allclose(val, y[idx], rtol=0, atol=1e-13)
        assert np.allclose(der, dy[idx], rtol=0, atol=1e-10)
        if order == 5:
            assert np.allclose(sec, d2y[idx], rtol=0, atol=1e-7)


@pytest.mark.parametrize("bad,msg", [
    (dict(stride=0.0), "stride"), (dict(stride=-0.01), "stride"), (dict(order=4), "order must be 5"),
    (dict(extrapolate=0.5), "-e"),
])
def test_bad_arguments(bad, msg):
    kw = dict(stride=0.01, extrapolate=5.0, order=5)
    kw.update(bad)
    with pytest.raises(ValueError, match=msg):
        compress_model(make_small_model(), min_nbor_dist=MIN_DIST, **kw)


def test_needs_neighbour_statistics():
    with pytest.raises(ValueError, match="min_nbor_dist"):
        compress_model(make_small_model())


def test_cli_bad_order(capsys):
    from deepmd_paddle.cli import main

    assert main(["compress", "-i", "nothing.dp", "-o", "x", "--order", "4"]) == 1
    assert "order must be 5" in capsys.readouterr().err


# ----------------------------------------------------------------------------- operator vs twin
def _block_env(model, coord, atype, cell, ti=0):
    d = model.descriptor
    env, _, _, _ = d.env_mat_raw(*to_tensors(coord, atype, cell))
    env = (env - d.davg[ti]) / d.dstd[ti]  # every atom as one of centre type ti
    return env.reshape([-1, d.nnei, 4])


@needs_op
@pytest.mark.parametrize("order", [5, 3])
@pytest.mark.parametrize("type_one_side", [False, True])
def test_operator_matches_paddle_twin(order, type_one_side):
    model = _small(order, stride=0.05, type_one_side=type_one_side)
    tab = model.descriptor.tabulation
    system = random_system(24, kind="ortho")
    op = load_library()
    for ti in (0, 1):
        env = _block_env(model, *system, ti)
        env.stop_gradient = False
        a, na = op.se_a_tabulate(env, tab.coef, tab.info, tab.sel, ti, tab.type_one_side, tab.ng)
        b, nb = twins.tabulate(env, tab.coef, tab.info, tab.sel, ti, tab.type_one_side, tab.ng)
        assert np.abs(a.numpy() - b.numpy()).max() < 1e-14
        assert int(na.numpy()[0]) == int(nb.numpy()[0]) == 0
        w = paddle.to_tensor(np.random.default_rng(ti).normal(size=a.shape))
        (ga,) = paddle.grad((a * w).sum(), env, create_graph=True)
        (gb,) = paddle.grad((b * w).sum(), env, create_graph=True)
        assert np.abs(ga.numpy() - gb.numpy()).max() < 1e-13
        # double gradient in the upstream cotangent w: d/dw <ga, v>
        w.stop_gradient = False
        (ga,) = paddle.grad((a * w).sum(), env, create_graph=True)
        (gb,) = paddle.grad((b * w).sum(), env, create_graph=True)
        v = paddle.to_tensor(np.random.default_rng(5).normal(size=env.shape))
        (wa,) = paddle.grad((ga * v).sum(), w)
        (wb,) = paddle.grad((gb * v).sum(), w)
        assert np.abs(wa.numpy() - wb.numpy()).max() < 1e-13
        w.stop_gradient = True


@needs_op
def test_out_of_range_counted(caplog):
    """Inputs beyond the coarse table and below the fine one are clamped and counted, by the
    operator and by the twin alike; the model warns with the count."""
    model = _small(stride=0.05)
    tab = model.descriptor.tabulation
    env = _block_env(model, *random_system(12, kind="ortho")).numpy()
    info = tab.info.numpy()
    env[0, 0, 0] = info[0, 2] + 1.0  # beyond ext of net (0, 0)
    env[1, 1, 0] = info[0, 0] - 1.0  # below lower
    env[2, 0, 0] = info[0, 2] * 10
    e = paddle.to_tensor(env)
    op = load_library()
    _, na = op.se_a_tabulate(e, tab.coef, tab.info, tab.sel, 0, tab.type_one_side, tab.ng)
    out, nb = twins.tabulate(e, tab.coef, tab.info, tab.sel, 0, tab.type_one_side, tab.ng)
    assert int(na.numpy()[0]) == int(nb.numpy()[0]) == 3
    with caplog.at_level(logging.WARNING, logger="deepmd_paddle"):
        tab(e, 0, model.kernels)
    assert tab.n_out_of_range == 3 and "3 embedding inputs outside the tables" in caplog.text
    # clamped rows: G is the table's end value, dG/ds = 0; operator and twin agree on the gradient
    e.stop_gradient = False
    a, _ = op.se_a_tabulate(e, tab.coef, tab.info, tab.sel, 0, tab.type_one_side, tab.ng)
    b, _ = twins.tabulate(e, tab.coef, tab.info, tab.sel, 0, tab.type_one_side, tab.ng)
    assert np.abs(a.numpy() - b.numpy()).max() < 1e-13  # round-off: |G R~| sums up to ~1
    (ga,) = paddle.grad(a.sum(), e)
    (gb,) = paddle.grad(b.sum(), e)
    assert np.abs(ga.numpy() - gb.numpy()).max() < 1e-14
    e2 = env.copy()
    e2[0, 0, 0] = info[0, 2] + 7.0  # further out: same G, only the R~ factor of the row changes
    a2, _ = op.se_a_tabulate(paddle.to_tensor(e2), tab.coef, tab.info, tab.sel, 0, tab.type_one_side, tab.ng)
    diff = (a2.numpy() - a.numpy())[0]  # ng x 4: G_end * 6.0 / nnei in column 0 only
    assert np.abs(diff[:, 1:]).max() == 0 and np.abs(diff[:, 0]).max() > 0


# ----------------------------------------------------------------------------- the compressed model
@needs_op
@pytest.mark.parametrize("type_one_side", [False, True])
def test_small_model_compressed_vs_uncompressed(type_one_side):
    coord, atype, cell = random_system(24, nframes=2, kind="triclinic")
    ref = make_small_model(use_op=None, type_one_side=type_one_side).eval()
    a = _eval(ref, coord, atype, cell)
    b = _eval(_small(type_one_side=type_one_side), coord, atype, cell)
    assert np.abs(a["energy"].numpy() - b["energy"].numpy()).max() / 24 < 1e-7
    assert np.abs(a["force"].numpy() - b["force"].numpy()).max() < 1e-6
    assert np.abs(a["virial"].numpy() - b["virial"].numpy()).max() < 1e-6


@needs_op
def test_forces_are_derivatives_of_compressed_energy():
    """Hermite tables at a coarse stride (so that they differ from the net) give forces equal to
    central differences of their own energy."""
    model = _small(order=3, stride=0.5)
    coord, atype, cell = random_system(18, kind="ortho", seed=3)
    out = _eval(model, coord, atype, cell)
    f = out["force"].numpy()[0]
    h = 1e-5
    for atom, x in ((0, 0), (5, 1), (11, 2)):
        cp, cm = coord.copy(), coord.copy()
        cp[0, atom, x] += h
        cm[0, atom, x] -= h
        fd = -(_energy(model, cp, atype, cell) - _energy(model, cm, atype, cell)) / (2 * h)
        assert abs(fd - f[atom, x]) < 2e-8
    unc = _eval(make_small_model(use_op=None).eval(), coord, atype, cell)
    assert np.abs(unc["force"].numpy()[0] - f).max() > 1e-6  # the tables are what was differentiated


@needs_op
def test_fine_tune_force_loss_reaches_fitting():
    """A loss on forces, through the operator's double gradient, gives the fitting weights the
    gradients of the plain-Paddle twin; the embedding nets get none."""
    coord, atype, cell = random_system(18, kind="ortho", seed=4)
    grads = []
    for use_op in (None, False):
        model = _small(stride=0.05)
        model.train()
        model.set_kernels(kernels_for(use_op))
        out = _eval(model, coord, atype, cell, create_graph=True)
        loss = (out["force"] ** 2).sum() + out["energy"].sum() * 1e-3
        loss.backward()
        fit = [p.grad.numpy().copy() for p in model.fitting.parameters()]
        assert all(p.grad is None for p in model.descriptor.embeddings.parameters())
        grads.append(fit)
    for a, b in zip(*grads):
        assert np.abs(a - b).max() <= 1e-10 * max(1.0, np.abs(b).max())
    assert max(np.abs(g).max() for g in grads[0]) > 0


@needs_op
def test_checkpoint_and_frozen_compressed_model(tmp_path):
    """A compressed checkpoint rebuilds the tables; the frozen compressed model equals the
    dynamic one (DeepPot on both) and the ASE calculator runs it."""
    from deepmd_paddle.io.frozen import freeze, load_model
    from deepmd_paddle.infer import DeepPot
    from deepmd_paddle.io import checkpoint

    model = _small()
    ck = checkpoint.save(str(tmp_path / "c.ckpt"), 0, model, None, {"model": model.get_config()}, state={})
    back = load_model(ck)
    assert back.descriptor.tabulation is not None
    assert np.array_equal(back.descriptor.tabulation.coef.numpy(), model.descriptor.tabulation.coef.numpy())
    coord, atype, cell = random_system(24, kind="ortho", seed=6)
    freeze(back, str(tmp_path / "frz"))
    e1, f1, v1 = DeepPot(str(tmp_path / "frz")).eval(coord, cell, atype[0])
    e2, f2, v2 = DeepPot(model).eval(coord, cell, atype[0])
    assert np.abs(e1 - e2).max() < 1e-10 and np.abs(f1 - f2).max() < 1e-12 and np.abs(v1 - v2).max() < 1e-11
    close = coord.copy()
    close[0, 1] = close[0, 0] + [0.1, 0.0, 0.0]  # closer than the tables reach
    assert back.descriptor.tabulation.spec["r_table"] > 0.1
    with pytest.warns(UserWarning, match="closer than its tables reach"):
        DeepPot(str(tmp_path / "frz")).eval(close, cell, atype[0])
    ase = pytest.importorskip("ase")
    from deepmd_paddle.calculator import DP

    atoms = ase.Atoms(["O" if t == 0 else "H" for t in atype[0]], positions=coord[0], cell=cell.reshape(3, 3), pbc=True)
    atoms.calc = DP(str(tmp_path / "frz"))
    assert abs(atoms.get_potential_energy() - float(np.ravel(e2)[0])) < 1e-10


@needs_shared
@needs_op
def test_reference_water_model():
    """DeePMD-kit's water model: 5th order at stride 0.01 within 1e-7 eV/atom and 1e-6 eV/A of
    the uncompressed model; 3rd order within 1e-6 eV/atom and 1e-4 eV/A."""
    from deepmd_paddle.io.dp_format import load_dp

    ref = np.load(REFERENCE / "water_se_e2_a_two_side_ref.npz")
    coord, cell, atype = ref["coord"][:2], ref["cell"][:2], np.tile(ref["atype"], (2, 1)).astype("int32")
    path = str(REFERENCE / "water_se_e2_a_two_side.dp")
    a = _eval(load_dp(path).eval(), coord, atype, cell)
    for order, (te, tf) in ((5, (1e-7, 1e-6)), (3, (1e-6, 1e-4))):
        b = _eval(compress_model(load_dp(path).eval(), 0.01, 5, order), coord, atype, cell)
        assert np.abs(a["energy"].numpy() - b["energy"].numpy()).max() / 192 < te
        assert np.abs(a["force"].numpy() - b["force"].numpy()).max() < tf
        assert np.abs(b["energy"].numpy() - ref["energy"][:2]).max() / 192 < te


@needs_op
def test_descriptor_product_operator():
    """se_a_descriptor (D = T T<^T) against Paddle's matmul: value, gradient, and the double
    gradient along the upstream cotangent and along T."""
    op = load_library()
    rng = np.random.default_rng(2)
    t1 = paddle.to_tensor(rng.normal(size=(5, 12, 4)))
    t2 = paddle.to_tensor(t1.numpy())
    w = paddle.to_tensor(rng.normal(size=(5, 12, 3)))
    v = paddle.to_tensor(rng.normal(size=(5, 12, 4)))
    res = []
    for t, fn in ((t1, lambda x: op.se_a_descriptor(x, 3)),
                  (t2, lambda x: paddle.matmul(x, x[:, :3, :], transpose_y=True))):
        t.stop_gradient = False
        w.stop_gradient = False
        d = fn(t)
        (g,) = paddle.grad((d * w).sum(), t, create_graph=True)
        gw, gt = paddle.grad((g * v).sum(), [w, t])
        res.append([x.numpy() for x in (d, g, gw, gt)])
    for a, b in zip(*res):
        assert np.abs(a - b).max() < 1e-12


@needs_op
def test_cli_compress_then_fine_tune(tmp_path, capsys):
    """`dpp compress -t input.json -o OUT.ckpt` (the range from the training data), then
    `--init-model` training: the fitting net moves, the tables and the embedding nets do not."""
    import json

    from test_train import tiny_config

    from deepmd_paddle.cli import main
    from deepmd_paddle.data.demo import make_demo
    from deepmd_paddle.io import checkpoint
    from deepmd_paddle.train.trainer import Trainer

    data = make_demo(str(tmp_path / "emt"), seed=7, segments=1, valid_segments=1, frames_per_segment=4, every=2,
                     n_ag=4)
    Trainer(tiny_config(data, numb_steps=4, disp_freq=4, save_freq=4), str(tmp_path / "a")).run()
    script = tmp_path / "input.json"
    script.write_text(json.dumps(tiny_config(data, numb_steps=4, disp_freq=4, save_freq=4)))
    assert main(["compress", "-i", str(tmp_path / "a"), "-o", str(tmp_path / "c.ckpt"), "-t", str(script),
                 "-s", "0.02", "--order", "3"]) == 0
    assert "tables valid for pair distances" in capsys.readouterr().out
    before, meta = checkpoint.load(str(tmp_path / "c.ckpt-0"))
    assert meta["config"]["model"]["compress"]["order"] == 3
    tr = Trainer(tiny_config(data, numb_steps=4, disp_freq=4, save_freq=4), str(tmp_path / "b"),
                 init_model=str(tmp_path / "c.ckpt-0"))
    tr.run()
    after = {k: v.numpy() for k, v in tr.model.state_dict().items()}
    moved = {k for k in after if not np.array_equal(after[k], before["model." + k])}
    assert any(k.startswith("fitting.") for k in moved)
    assert not any(k.startswith("descriptor.") for k in moved), sorted(moved)


def _without_prod_force(get):
    def patched(self, name, order=0, dtype=None):
        return get(self, name, 9 if name == "prod_force_virial" else order, dtype)
    return patched


@needs_op
@pytest.mark.parametrize("kind", ["small", "open"])
def test_prod_force_virial_operator(kind, monkeypatch):
    """The one-pass force / virial / atomic virial operator against the index_add scatter, for
    the whole frame (the model) and for a block of centre atoms (the frozen lower program)."""
    from deepmd_paddle.io.frozen import LowerProgram

    model = make_small_model(use_op=None).eval()
    coord, atype, cell = random_system(18, nframes=2, kind=kind, seed=8)
    c, a, b = to_tensors(coord, atype, cell)
    nlist, shift, _, _ = model.descriptor.neighbor_list(c, a, b)
    centre = paddle.to_tensor(np.array([3, 0, 11, 7], "int64"))
    block = paddle.gather(nlist, centre, axis=1), paddle.gather(shift, centre, axis=1)
    runs = []
    for fused in (True, False):
        if not fused:  # the kernel's plain-Paddle twin (index_add scatters)
            monkeypatch.setattr(type(model.kernels), "get", _without_prod_force(type(model.kernels).get))
        out = model(c, a, b, do_atomic_virial=True)
        low = LowerProgram(model)(c, a, block[0], block[1], centre)
        runs.append([out["force"], out["virial"], out["atom_virial"]] + list(low[1:]))
    for x, y in zip(*runs):
        assert np.abs(x.numpy() - y.numpy()).max() < 1e-12
    assert np.abs(runs[0][0].numpy()).max() > 1e-3


@needs_op
def test_no_extrapolation_table_and_float32_model():
    """-e 1 (no coarse table: s beyond the data is clamped at once) and a float32 model (the
    tables and D in float64, the fitting net in float32)."""
    model = compress_model(make_small_model(use_op=None).eval(), 0.05, 1.0, 5, min_nbor_dist=MIN_DIST)
    tab = model.descriptor.tabulation
    assert (tab.info.numpy()[:, 6] == 0).all()  # n2 = 0
    env = _block_env(model, *random_system(12, kind="ortho", seed=9)).numpy()
    env[0, 0, 0] = tab.info.numpy()[0, 1] + 0.5  # beyond upper = ext
    e = paddle.to_tensor(env)
    a, na = load_library().se_a_tabulate(e, tab.coef, tab.info, tab.sel, 0, tab.type_one_side, tab.ng)
    b, nb = twins.tabulate(e, tab.coef, tab.info, tab.sel, 0, tab.type_one_side, tab.ng)
    assert np.abs(a.numpy() - b.numpy()).max() < 1e-14 and int(na.numpy()[0]) == int(nb.numpy()[0]) == 1
    coord, atype, cell = random_system(24, kind="ortho", seed=10)
    ref = _eval(make_small_model(use_op=None, precision="float32").eval(), coord, atype, cell)
    out = _eval(_small(precision="float32"), coord, atype, cell)
    assert np.abs(ref["force"].numpy() - out["force"].numpy()).max() < 1e-5  # float32 rounding
