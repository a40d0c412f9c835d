"""The energy model against its own derivatives and symmetries (DeePMD-kit-style checks).

Every test runs on the plain-Paddle path and, when it builds, on the C++ operator path."""
import numpy as np
from deepmd_paddle.kernels.build import load_library
import paddle
import pytest

from conftest import assert_smooth_across_rcut, loss_batch, make_small_model, random_system, strain_virial_fd, to_tensors, kernels_for

PATHS = [False, True]


def _skip_without_op(use_op):
    if use_op:
        if load_library() is None:
            pytest.skip("the C++ operator is not available on this machine")


def _eval(model, coord, atype, cell, **kw):
    out = model(*to_tensors(coord, atype, cell), **kw)
    return {k: v.numpy() for k, v in out.items()}


@pytest.mark.parametrize("use_op", PATHS)
@pytest.mark.parametrize("kind", ["ortho", "triclinic", "small", "open"])
def test_force_is_minus_energy_gradient(use_op, kind):
    _skip_without_op(use_op)
    model = make_small_model(use_op, sel=(40, 80) if kind == "small" else (12, 24))
    n = 6 if kind == "small" else 16
    coord, atype, cell = random_system(n, 1, kind, seed=3)
    out = _eval(model, coord, atype, cell)
    h = 1e-5
    rng = np.random.default_rng(1)
    for i in rng.choice(n, 4, replace=False):
        for a in range(3):
            cp, cm = coord.copy(), coord.copy()
            cp[0, i, a] += h
            cm[0, i, a] -= h
            fd = -(_eval(model, cp, atype, cell)["energy"][0, 0] - _eval(model, cm, atype, cell)["energy"][0, 0]) / (2 * h)
            assert out["force"][0, i, a] == pytest.approx(fd, rel=1e-6, abs=1e-8)


@pytest.mark.parametrize("use_op", PATHS)
@pytest.mark.parametrize("kind", ["ortho", "triclinic", "small"])
def test_virial_is_strain_derivative(use_op, kind):
    """W = -dE/d(eps) under the homogeneous strain r -> (1 + eps) r, box -> box (1 + eps)."""
    _skip_without_op(use_op)
    model = make_small_model(use_op, sel=(40, 80) if kind == "small" else (12, 24))
    n = 6 if kind == "small" else 16
    coord, atype, cell = random_system(n, 1, kind, seed=4)
    out = _eval(model, coord, atype, cell, do_atomic_virial=True)
    fd = strain_virial_fd(lambda c, b: _eval(model, c, atype, b)["energy"][0, 0], coord, cell, 1e-6)
    np.testing.assert_allclose(out["virial"].reshape(3, 3), fd, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(out["atom_virial"].sum(1), out["virial"], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(out["atom_energy"].sum(1), out["energy"], rtol=1e-12)


@pytest.mark.parametrize("use_op", PATHS)
def test_invariances(use_op):
    _skip_without_op(use_op)
    model = make_small_model(use_op, type_one_side=True)
    coord, atype, _ = random_system(20, 1, "open", seed=5)
    ref = _eval(model, coord, atype, None)
    # translation
    out = _eval(model, coord + np.array([0.3, -1.7, 2.2]), atype, None)
    np.testing.assert_allclose(out["energy"], ref["energy"], rtol=1e-12)
    np.testing.assert_allclose(out["force"], ref["force"], atol=1e-12)
    # rotation: E invariant, F and W rotate
    q, _ = np.linalg.qr(np.random.default_rng(2).normal(size=(3, 3)))
    out = _eval(model, coord @ q.T, atype, None)
    np.testing.assert_allclose(out["energy"], ref["energy"], rtol=1e-12)
    np.testing.assert_allclose(out["force"], ref["force"] @ q.T, atol=1e-11)
    np.testing.assert_allclose(out["virial"].reshape(3, 3), q @ ref["virial"].reshape(3, 3) @ q.T, atol=1e-11)
    # permutation of same-type atoms
    perm = np.arange(20)
    same = np.flatnonzero(atype[0] == 1)
    perm[same] = np.random.default_rng(3).permutation(same)
    out = _eval(model, coord[:, perm], atype[:, perm], None)
    np.testing.assert_allclose(out["energy"], ref["energy"], rtol=1e-12)
    np.testing.assert_allclose(out["force"], ref["force"][:, perm], atol=1e-12)
    # periodic images: shifting one atom by a lattice vector changes nothing
    coord, atype, cell = random_system(16, 1, "triclinic", seed=6)
    ref = _eval(model, coord, atype, cell)
    c2 = coord.copy()
    c2[0, 3] += cell.reshape(3, 3)[1] - 2 * cell.reshape(3, 3)[2]
    out = _eval(model, c2, atype, cell)
    np.testing.assert_allclose(out["energy"], ref["energy"], rtol=1e-12)
    np.testing.assert_allclose(out["force"], ref["force"], atol=1e-11)


@pytest.mark.parametrize("use_op", PATHS)
def test_smooth_across_rcut(use_op):
    """A neighbour crossing rcut: energy and force change continuously."""
    _skip_without_op(use_op)
    assert_smooth_across_rcut(make_small_model(use_op), [0, 1, 1])


@pytest.mark.parametrize("use_op", PATHS)
@pytest.mark.parametrize("type_one_side", [True, False])
def test_force_loss_weight_gradient(use_op, type_one_side):
    """d/dw of a loss on forces (the double gradient) equals finite differences."""
    _skip_without_op(use_op)
    model = make_small_model(use_op, type_one_side=type_one_side)
    coord, atype, cell = random_system(12, 2, "ortho", seed=7)
    c, a, b = to_tensors(coord, atype, cell)
    target = paddle.to_tensor(np.random.default_rng(0).normal(size=(2, 12, 3)))

    def loss():
        f = model(c, a, b, create_graph=True)["force"]
        return ((f - target) ** 2).sum()

    params = [model.descriptor.embeddings[0].layers[1].w, model.fitting.nets[1].layers[0].w]
    grads = paddle.grad(loss(), params)
    h = 1e-4  # the loss is O(100): a smaller step drowns in rounding
    for p, g in zip(params, grads):
        base = p.numpy().copy()
        for idx in [(0, 0), (1, 2)]:
            for s, sign in ((h, 1), (-h, -1)):
                v = base.copy()
                v[idx] += s
                p.set_value(v)
                if sign > 0:
                    lp = float(loss())
                else:
                    lm = float(loss())
            p.set_value(base)
            fd = (lp - lm) / (2 * h)
            assert float(g.numpy()[idx]) == pytest.approx(fd, rel=1e-6, abs=1e-9)


def test_op_and_paddle_paths_agree():
    _skip_without_op(True)
    m0, m1 = make_small_model(False, sel=(40, 80)), make_small_model(True, sel=(40, 80))
    for kind in ["ortho", "triclinic", "small", "open"]:
        coord, atype, cell = random_system(6 if kind == "small" else 16, 2, kind, seed=8)
        a = _eval(m0, coord, atype, cell, do_atomic_virial=True)
        b = _eval(m1, coord, atype, cell, do_atomic_virial=True)
        for k in a:
            np.testing.assert_allclose(a[k], b[k], rtol=1e-12, atol=1e-12, err_msg=f"{kind}: {k}")


def test_batch_equals_single_frames():
    model = make_small_model(False)
    coord, atype, cell = random_system(12, 3, "triclinic", seed=9)
    both = _eval(model, coord, atype, cell)
    for f in range(3):
        one = _eval(model, coord[f:f + 1], atype[f:f + 1], cell[f:f + 1])
        np.testing.assert_allclose(one["force"][0], both["force"][f], atol=1e-13)
        np.testing.assert_allclose(one["energy"][0], both["energy"][f], rtol=1e-13)


@pytest.mark.parametrize("bad, msg", [
    ("shape", "coord must have shape"),
    ("type", "out of range"),
    ("overlap", "overlap"),
    ("box", "zero volume"),
    ("boxshape", "box/cell must have shape"),
])
def test_bad_input(bad, msg):
    model = make_small_model(False)
    coord, atype, cell = random_system(8, 1, "ortho", seed=10)
    if bad == "shape":
        coord = coord.reshape(1, -1)
    elif bad == "type":
        atype[0, 5] = 2
    elif bad == "overlap":
        coord[0, 4] = coord[0, 2]
    elif bad == "box":
        cell[0, 6:] = cell[0, 3:6]
    elif bad == "boxshape":
        cell = cell[:, :6]
    with pytest.raises(ValueError, match=msg):
        model(paddle.to_tensor(coord), paddle.to_tensor(atype), None if cell is None else paddle.to_tensor(cell))


def test_truncated_neighbours_warn():
    model = make_small_model(False, sel=(2, 3))
    coord, atype, cell = random_system(16, 1, "ortho", seed=11)
    with pytest.warns(UserWarning, match="neighbours beyond sel"):
        model(*to_tensors(coord, atype, cell))


@pytest.mark.parametrize("type_one_side", [True, False])
@pytest.mark.parametrize("resnet_dt", [True, False])
def test_fused_embedding_matches_layers(type_one_side, resnet_dt):
    """se_a_embed (evaluation) and se_a_embed_train (gradients and the force-loss double
    gradient to the weights) equal the Paddle layers."""
    _skip_without_op(True)
    coord, atype, cell = random_system(12, 2, "triclinic", seed=12)
    c, a, b = to_tensors(coord, atype, cell)
    target = paddle.to_tensor(np.random.default_rng(0).normal(size=(2, 12, 3)))
    results = []
    for fused in (False, True):
        m = make_small_model(True, type_one_side=type_one_side, resnet_dt=resnet_dt)
        m.descriptor.prefer_fused_training = fused
        assert m.descriptor.embedding_path(False) == ("fused_train" if fused else "layers")
        o = m(c, a, b, create_graph=True)
        loss = ((o["force"] - target) ** 2).sum() + 0.3 * (o["energy"] ** 2).sum() + (o["virial"] ** 2).sum()
        grads = paddle.grad(loss, list(m.parameters()))
        for p in m.parameters():
            p.stop_gradient = True
        m.set_kernels(kernels_for(True if fused else False))
        assert m.descriptor.embedding_path(False) == ("fused" if fused else "layers")
        frozen = m(c, a, b, do_atomic_virial=True)
        results.append((float(loss), [g.numpy() for g in grads], {k: v.numpy() for k, v in frozen.items()}))
    (l0, g0, f0), (l1, g1, f1) = results
    assert l1 == pytest.approx(l0, rel=1e-13)
    for x, y in zip(g1, g0):
        np.testing.assert_allclose(x, y, rtol=1e-11, atol=1e-12 * np.abs(y).max())
    for k in f0:
        np.testing.assert_allclose(f1[k], f0[k], rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("type_one_side,resnet_dt,kind,cache_mb,precision", [
    (True, False, "triclinic", "512", "float64"), (False, True, "ortho", "0", "float64"),
    (True, True, "open", "512", "float64"), (False, False, "ortho", "512", "float32")])
def test_fused_training_step_gradient(type_one_side, resnet_dt, kind, cache_mb, precision, monkeypatch):
    """The hand-assembled training step (train/fused_step.py: the C++ embedding passes and the
    loss gradient put together without autograd through the embedding) gives the same loss and
    the same gradient in every weight as autograd through the Paddle layers, for a loss on
    energy, forces and virial over two frames; with and without the G, dG/ds cache."""
    _skip_without_op(True)
    monkeypatch.setenv("DEEPMD_PADDLE_EMBED_CACHE_MB", cache_mb)
    from deepmd_paddle.train import fused_step
    coord, atype, cell = random_system(14, 2, kind, seed=21)
    batch, loss_fn = loss_batch(coord, atype, cell)
    c, a, b = batch["coord"], batch["atype"], batch["box"]
    ref = make_small_model(True, type_one_side=type_one_side, resnet_dt=resnet_dt, precision=precision)
    ref.descriptor.prefer_fused_training = False
    out = ref(c, a, b, create_graph=True)
    loss_ref, l2_ref = loss_fn(out, batch, 5e-4)
    loss_ref.backward()
    m = make_small_model(True, type_one_side=type_one_side, resnet_dt=resnet_dt, precision=precision)
    assert fused_step.supported(m)
    loss, l2 = fused_step.step(m, loss_fn, batch, 5e-4)
    tol = 1e-12 if precision == "float64" else 1e-5
    assert float(loss) == pytest.approx(float(loss_ref), rel=tol)
    for k in l2_ref:
        assert l2[k] == pytest.approx(l2_ref[k], rel=tol)
    n = 0
    for (name, p), q in zip(m.named_parameters(), ref.parameters()):
        assert p.grad is not None, name
        scale = np.abs(q.grad.numpy()).max()
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-10 if precision == "float64" else 2e-4,
                                   atol=(1e-11 if precision == "float64" else 1e-5) * scale, err_msg=name)
        n += 1
    assert n == len(list(ref.parameters()))


def test_embedding_cache_changes_nothing(monkeypatch):
    """se_a_embed_cached keeps G and dG/ds for the force pass when they fit in
    DEEPMD_PADDLE_EMBED_CACHE_MB; without the cache the gradient evaluates the nets again and
    gives the same numbers."""
    _skip_without_op(True)
    coord, atype, cell = random_system(16, 2, "triclinic", seed=5)
    m = make_small_model(True)
    for p in m.parameters():
        p.stop_gradient = True
    assert m.descriptor.embedding_path(False) == "fused"
    assert m.kernels.has("embed_cached")
    env, _, _, _ = m.descriptor.env_mat_raw(*to_tensors(coord, atype, cell))
    outs = []
    for mb in ("512", "0"):
        monkeypatch.setenv("DEEPMD_PADDLE_EMBED_CACHE_MB", mb)
        _, cache = m.kernels.embed_cached(env.reshape([-1, m.descriptor.nnei, 4]), m.descriptor.fused_params(0),
                                        *m.descriptor.fused_attrs())
        assert (cache.shape[0] == 0) == (mb == "0")
        outs.append({k: v.numpy() for k, v in m(*to_tensors(coord, atype, cell)).items()})
    for k in outs[0]:
        np.testing.assert_array_equal(outs[0][k], outs[1][k])
