"""Excluded type pairs of the se_e2_a descriptor (``exclude_types``): the environment-matrix
kernel with its mask (C++ operator and plain-Paddle twin: values, gradient, double gradient), and
the model with them: forces are minus the energy gradient, the excluded types do not feel each
other, every embedding path and both training paths give the same numbers."""
import numpy as np
import paddle
import pytest

from conftest import kernels_for, loss_batch, random_system, small_model_config, to_tensors
from deepmd_paddle.kernels import twins
from deepmd_paddle.kernels.build import load_library
from deepmd_paddle.model import EnergyModel

needs_op = pytest.mark.skipif(load_library() is None, reason="the C++ operators are not available")
SEL = (12, 24)


def _model(use_op, exclude, type_one_side=False, precision="float64", type_embedding=False):
    cfg = small_model_config(type_one_side=type_one_side, precision=precision, sel=SEL)
    cfg["descriptor"]["exclude_types"] = exclude
    cfg["descriptor"]["type_embedding"] = type_embedding  # (element properties: descriptor_te)
    m = EnergyModel.from_config(cfg, kernels_for(use_op))
    rng = np.random.default_rng(0)
    d = m.descriptor
    davg = np.zeros([2, d.nnei, 4])
    davg[..., 0] = rng.uniform(0.05, 0.2, [2, 1])  # non-zero: padded rows are not zero before the mask
    dstd = np.ones([2, d.nnei, 4])
    dstd[..., 0] = rng.uniform(0.2, 0.4, [2, 1])
    dstd[..., 1:] = rng.uniform(0.1, 0.3, [2, 1, 1])
    d.set_stat(davg, dstd)
    m.fitting.set_bias([-1.0, -0.5])
    return m


def _env_inputs(seed=2):
    m = _model(False, [[0, 1]])
    coord, atype, cell = random_system(14, 2, "triclinic", seed=seed)
    c, a, b = to_tensors(coord, atype, cell)
    nlist, shift, _, _ = m.descriptor.neighbor_list(c, a, b)
    rij = twins.build_rij(c, nlist, shift).detach()
    return m, rij, nlist, a


@needs_op
def test_kernel_equals_twin_to_second_order():
    """deepmd_env_mat_excl against the twin: R~, the gradient in r_ij and the double gradient
    (of a loss on that gradient, in r_ij and in the upstream cotangent)."""
    from deepmd_paddle.kernels import cpp

    m, rij, nlist, a = _env_inputs()
    d = m.descriptor
    rng = np.random.default_rng(1)
    w = paddle.to_tensor(rng.normal(size=rij.shape[:3] + [4]))
    v = paddle.to_tensor(rng.normal(size=rij.shape))
    results = []
    for fn in (cpp.env_mat_excl, twins.env_mat_excl):
        x = paddle.to_tensor(rij.numpy(), stop_gradient=False)
        env = fn(x, nlist, a, d.davg, d.dstd, d.emask, d.rcut, d.rcut_smth)
        (g,) = paddle.grad((env * w).sum(), x, create_graph=True)
        (gg,) = paddle.grad((g * v).sum() + (g * g).sum(), x)
        results.append((env.numpy(), g.numpy(), gg.numpy()))
    for got, want in zip(results[0], results[1]):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12 * np.abs(want).max())


def test_mask_zeroes_every_slot_of_an_excluded_block():
    """The rows of an excluded (centre type, neighbour type) block are 0, padded slots included
    (DeePMD-kit's TensorFlow mask); every other row is env_mat's, bit for bit."""
    m, rij, nlist, a = _env_inputs()
    d = m.descriptor
    for kernels in [kernels_for(False)] + ([kernels_for(True)] if load_library() is not None else []):
        full = kernels.env_mat(rij, nlist, a, d.davg, d.dstd, d.rcut, d.rcut_smth).numpy()
        masked = kernels.env_mat_excl(rij, nlist, a, d.davg, d.dstd, d.emask, d.rcut, d.rcut_smth).numpy()
        at = a.numpy()
        o, h = slice(0, SEL[0]), slice(SEL[0], sum(SEL))
        assert np.all(masked[at == 0][:, h] == 0) and np.all(masked[at == 1][:, o] == 0)
        assert np.array_equal(masked[at == 0][:, o], full[at == 0][:, o])
        assert np.array_equal(masked[at == 1][:, h], full[at == 1][:, h])
        pad = nlist.numpy()[at == 0][:, h] < 0
        assert pad.any() and (full[at == 0][:, h][pad][:, 0] != 0).all()  # a padded row is not 0 unmasked


@pytest.mark.parametrize("use_op", [False, True])
@pytest.mark.parametrize("type_one_side,tebd", [(False, False), (True, False), (True, True)])
def test_forces_and_the_types_that_do_not_meet(use_op, type_one_side, tebd):
    """With [[0, 1]] an O and an H never interact: moving every H by the same vector leaves the
    energy unchanged; the forces are minus the finite-difference gradient (also with the
    type-embedding descriptor, whose one net sees the zero rows too)."""
    if use_op and load_library() is None:
        pytest.skip("the C++ operators are not available")
    m = _model(use_op, [[0, 1]], type_one_side, type_embedding=tebd)
    coord, atype, cell = random_system(15, 1, "ortho", seed=7)

    def energy(c, model=m):
        return model(*to_tensors(c, atype, cell))["energy"].numpy()[0, 0]

    def energy_of(model):
        return energy(coord, model)

    out = m(*to_tensors(coord, atype, cell))
    moved = coord.copy()
    moved[0, atype[0] == 1] += np.array([0.31, -0.17, 0.23])
    assert energy(moved) == pytest.approx(energy(coord), rel=1e-13)
    h = 1e-5
    for i in (0, 1, 5):
        for k in range(3):
            cp, cm = coord.copy(), coord.copy()
            cp[0, i, k] += h
            cm[0, i, k] -= h
            fd = -(energy(cp) - energy(cm)) / (2 * h)
            assert out["force"].numpy()[0, i, k] == pytest.approx(fd, rel=1e-6, abs=1e-8)
    full = _model(use_op, [], type_one_side, type_embedding=tebd)
    assert abs(energy_of(full) - energy_of(m)) > 1e-3  # the exclusion changes the model


@needs_op
@pytest.mark.parametrize("type_one_side", [False, True])
def test_embedding_paths_agree(type_one_side):
    """Paddle layers, the fused evaluation operator, and autograd through se_a_embed_train: the
    same energies, forces and force-loss weight gradients; so do the plain-Paddle kernels."""
    coord, atype, cell = random_system(12, 2, "triclinic", seed=12)
    c, a, b = to_tensors(coord, atype, cell)
    target = paddle.to_tensor(np.random.default_rng(0).normal(size=(2, 12, 3)))
    runs = []
    for use_op, fused in ((False, False), (True, False), (True, True)):
        m = _model(use_op, [[0, 1], [1, 1]], type_one_side)
        m.descriptor.prefer_fused_training = fused
        o = m(c, a, b, create_graph=True)
        loss = ((o["force"] - target) ** 2).sum() + 0.3 * (o["energy"] ** 2).sum() + (o["virial"] ** 2).sum()
        grads = paddle.grad(loss, list(m.parameters()), allow_unused=True)
        for p in m.parameters():
            p.stop_gradient = True
        frozen = m(c, a, b, do_atomic_virial=True)
        runs.append((float(loss), [None if g is None else g.numpy() for g in grads],
                     {k: v.numpy() for k, v in frozen.items()}))
    for loss, grads, frozen in runs[1:]:
        assert loss == pytest.approx(runs[0][0], rel=1e-12)
        for x, y in zip(grads, runs[0][1]):
            if y is None or x is None:  # an excluded pair's net: no gradient reaches it
                assert x is None or not np.any(x)
                continue
            np.testing.assert_allclose(x, y, rtol=1e-10, atol=1e-11 * (np.abs(y).max() + 1e-300))
        for k in frozen:
            np.testing.assert_allclose(frozen[k], runs[0][2][k], rtol=1e-11, atol=1e-12)


@needs_op
@pytest.mark.parametrize("type_one_side,tebd", [(False, False), (True, False), (True, True)])
def test_fused_training_step_gradient(type_one_side, tebd):
    """The hand-assembled training step equals autograd through the Paddle layers with excluded
    pairs: loss and every weight's gradient (zero for the nets of excluded pairs)."""
    from deepmd_paddle.train import fused_step

    coord, atype, cell = random_system(14, 2, "ortho", seed=21)
    batch, loss_fn = loss_batch(coord, atype, cell)
    ref = _model(True, [[0, 1]], type_one_side, type_embedding=tebd)
    loss_ref, _ = loss_fn(ref(batch["coord"], batch["atype"], batch["box"], create_graph=True), batch, 5e-4)
    loss_ref.backward()
    m = _model(True, [[0, 1]], type_one_side, type_embedding=tebd)
    assert fused_step.supported(m)
    loss, _ = fused_step.step(m, loss_fn, batch, 5e-4)
    assert float(loss) == pytest.approx(float(loss_ref), rel=1e-12)
    for (name, p), q in zip(m.named_parameters(), ref.parameters()):
        want = np.zeros(p.shape) if q.grad is None else q.grad.numpy()
        got = np.zeros(p.shape) if p.grad is None else p.grad.numpy()
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-11 * (np.abs(want).max() + 1e-300), err_msg=name)


@pytest.mark.parametrize("bad,msg", [([[0, 2]], "outside 0..1"), ([[0]], "pair of type indices"),
                                     ([["O", "H"]], "pair of type indices")])
def test_bad_pairs_name_the_key(bad, msg):
    with pytest.raises(ValueError, match=f"exclude_types.*{msg}"):
        _model(False, bad)


def test_statistics_see_the_mask():
    """The unnormalised environment the statistics sum (DeePMD-kit masks it too) has the rows
    of excluded pairs zero."""
    m = _model(False, [[0, 1]])
    coord, atype, cell = random_system(14, 1, "ortho", seed=4)
    env = m.descriptor.env_mat_raw(*to_tensors(coord, atype, cell))[0].numpy()[0]
    assert np.all(env[atype[0] == 0][:, SEL[0]:] == 0) and np.all(env[atype[0] == 1][:, :SEL[0]] == 0)
    assert np.any(env[atype[0] == 0][:, :SEL[0]] != 0)
