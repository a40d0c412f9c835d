"""The C++ operators (deepmd_paddle.kernels) against brute-force NumPy and the plain-Paddle twins:
neighbour sets and order, environment matrix, gradient, double gradient, checks, fallback."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from deepmd_paddle.kernels.build import load_library
import paddle
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from numpy_reference import build_rij_np, env_mat_np, neighbor_list_np, random_frames, random_stats  # noqa: E402

from deepmd_paddle.kernels import build, cpp as ops  # noqa: E402

try:
    from deepmd_paddle.kernels.twins import env_mat as env_mat_paddle, neighbor_list as neighbor_list_paddle
except ImportError:  # the plain-Paddle twins are optional here
    env_mat_paddle = neighbor_list_paddle = None

pytestmark = pytest.mark.skipif(not (load_library() is not None), reason="the C++ operator could not be built")

RCUT, RCUT_SMTH = 3.6, 1.0
SEL = [12, 20]
SMALL_RCUT = 4.5  # the "small" boxes have plane spacings near 2.2: up to 3 images per side
KINDS = ["ortho", "triclinic", "small", "open"]


def frames(kind, dtype="float64", seed=0):
    natoms = 8 if kind == "small" else 40
    coord, box, atype = random_frames(kind, natoms=natoms, nframes=2, seed=seed)
    rcut = SMALL_RCUT if kind == "small" else RCUT
    sel = [150, 150] if kind == "small" else SEL  # small: up to ~110 neighbours of a type
    return coord.astype(dtype), None if box is None else box.astype(dtype), atype, rcut, sel


def tensors(coord, box, atype):
    return (paddle.to_tensor(coord), None if box is None else paddle.to_tensor(box), paddle.to_tensor(atype))


def slot_distances(coord, nlist, shift):
    d = np.linalg.norm(build_rij_np(coord, nlist, shift), axis=-1)
    return np.where(nlist >= 0, d, np.inf)


def assert_same_neighbors(coord, box, got, want, sel, rtol):
    """Same (j, shift) set per type block and the same distance in every slot (order up to
    ties). A block cut by sel may differ among the neighbours tied with its last slot."""
    nl, sh, rnl, rsh = got[0], got[1], want[0], want[1]
    np.testing.assert_array_equal(got[2], want[2])  # nmax
    c = coord.astype(np.float64)
    dist, rdist = slot_distances(c, nl, sh), slot_distances(c, rnl, rsh)
    np.testing.assert_allclose(dist, rdist, rtol=rtol)
    lo = np.concatenate([[0], np.cumsum(sel)])
    for f, i in np.ndindex(nl.shape[:2]):
        inv = np.zeros((3, 3)) if box is None else np.linalg.inv(box[f].reshape(3, 3).astype(np.float64))
        for t in range(len(sel)):
            blk = slice(lo[t], lo[t + 1])
            cut = np.inf
            if sel[t] and rnl[f, i, lo[t + 1] - 1] >= 0:  # full block: ties at its end may differ
                cut = rdist[f, i, lo[t + 1] - 1] * (1 - 10 * rtol)

            def key(n, s, d):
                ints = np.rint(s[f, i, blk].astype(np.float64) @ inv).astype(int)  # lattice shifts
                return sorted((int(j), *v) for j, v, r in zip(n[f, i, blk], ints.tolist(), d[f, i, blk]) if j >= 0 and r < cut)

            assert key(nl, sh, dist) == key(rnl, rsh, rdist), (f, i, t)


# ----------------------------------------------------------------------------- neighbour list
@pytest.mark.parametrize("kind", KINDS)
def test_neighbor_list_matches_numpy(kind):
    coord, box, atype, rcut, sel = frames(kind)
    got = [t.numpy() for t in ops.neighbor_list(*tensors(coord, box, atype), rcut, sel)]
    want = neighbor_list_np(coord, box, atype, rcut, sel)
    assert got[0].dtype == np.int32 and got[2].dtype == np.int32 and got[1].dtype == np.float64
    assert_same_neighbors(coord, box, got, want, sel, rtol=1e-12)
    np.testing.assert_allclose(got[3], want[3], rtol=1e-12)
    # where distances are distinct, the slot order is the reference's exactly
    d = np.minimum(slot_distances(coord, want[0], want[1]), 1e300)
    distinct = np.ones_like(d, dtype=bool)
    gap = np.abs(np.diff(d, axis=-1)) > 1e-9
    distinct[..., 1:] &= gap
    distinct[..., :-1] &= gap
    np.testing.assert_array_equal(got[0][distinct], want[0][distinct])
    if kind == "small":
        assert (got[0] == np.arange(coord.shape[1])[None, :, None]).any(), "no self image was found"
        assert (got[2] <= np.array(sel)).all()  # complete lists compared, no truncation


@pytest.mark.parametrize("kind", ["triclinic", "open"])
def test_neighbor_list_float32(kind):
    coord, box, atype, rcut, sel = frames(kind, dtype="float32", seed=1)
    got = [t.numpy() for t in ops.neighbor_list(*tensors(coord, box, atype), rcut, sel)]
    want = neighbor_list_np(coord.astype(np.float64), None if box is None else box.astype(np.float64), atype, rcut, sel)
    assert got[1].dtype == np.float32 and got[3].dtype == np.float32
    assert_same_neighbors(coord, box, got, want, sel, rtol=1e-5)


@pytest.mark.skipif(neighbor_list_paddle is None, reason="deepmd_paddle.kernels.twins is absent")
@pytest.mark.parametrize("kind", KINDS)
def test_neighbor_list_matches_plain_paddle(kind):
    coord, box, atype, rcut, sel = frames(kind, seed=2)
    t = tensors(coord, box, atype)
    got = [x.numpy() for x in ops.neighbor_list(*t, rcut, sel)]
    want = [x.numpy() for x in neighbor_list_paddle(t[0], t[1], t[2], rcut, sel)]
    assert_same_neighbors(coord, box, got, want, sel, rtol=1e-10)
    np.testing.assert_allclose(got[3], want[3], rtol=1e-10)


def test_neighbor_list_many_atoms_matches_numpy():
    """A periodic box with a few hundred atoms: many cells, every direction wrapped."""
    rng = np.random.default_rng(5)
    H = np.array([[14.0, 0.0, 0.0], [3.0, 13.0, 0.0], [-2.0, 2.5, 12.0]])
    coord = (rng.uniform(-0.5, 1.5, (1, 600, 3)) @ H)
    atype = rng.integers(0, 2, (1, 600)).astype(np.int32)
    sel = [60, 60]
    got = [t.numpy() for t in ops.neighbor_list(*tensors(coord, H.reshape(1, 9), atype), RCUT, sel)]
    want = neighbor_list_np(coord, H.reshape(1, 9), atype, RCUT, sel)
    assert_same_neighbors(coord, H.reshape(1, 9), got, want, sel, rtol=1e-12)


def test_nmax_reports_truncation():
    coord, box, atype, rcut, _ = frames("ortho")
    sel = [2, 3]
    nl, _, nmax, _ = (t.numpy() for t in ops.neighbor_list(*tensors(coord, box, atype), rcut, sel))
    want = neighbor_list_np(coord, box, atype, rcut, [100, 100])[2]
    np.testing.assert_array_equal(nmax, want)
    assert (nmax > np.array(sel)).all()
    assert (nl >= 0).all()  # every slot filled with the nearest ones
    full = neighbor_list_np(coord, box, atype, rcut, sel)
    np.testing.assert_array_equal(nl, full[0])


def test_mindist_zero_for_overlapping_atoms():
    coord, box, atype, rcut, sel = frames("ortho")
    coord[1, 5] = coord[1, 9]
    _, _, _, md = ops.neighbor_list(*tensors(coord, box, atype), rcut, sel)
    assert md.numpy()[1] == 0.0 and md.numpy()[0] > 0.5
    coord, _, atype, rcut, sel = frames("open")
    _, _, _, md = ops.neighbor_list(*tensors(coord, None, atype), 0.1, sel)
    assert (md.numpy() == 0.1).all()  # no pair within rcut


def test_input_errors_name_the_problem():
    coord, box, atype, rcut, sel = frames("ortho")
    c, b, a = tensors(coord, box, atype)
    with pytest.raises(ValueError, match=r"coord must have shape \[nf, nloc, 3\], got \[2, 40\]"):
        ops.neighbor_list(c[:, :, 0], b, a, rcut, sel)
    bad = atype.copy()
    bad[0, 17] = 5
    with pytest.raises(ValueError, match=r"atom type 5 at index 17 .*out of range: the model has ntypes = 2 \(allowed 0..1\)"):
        ops.neighbor_list(c, b, paddle.to_tensor(bad), rcut, sel)
    flat = box.copy()
    flat[1, 6:] = flat[1, :3]  # c = a
    with pytest.raises(ValueError, match=r"box of frame 1 has zero volume \(det = 0\)"):
        ops.neighbor_list(c, paddle.to_tensor(flat), a, rcut, sel)
    with pytest.raises(ValueError, match=r"box of frame 1 is too thin for rcut = 3.6: .* periodic images"):
        ops.neighbor_list(c, b * 1e-3, a, rcut, sel)
    with pytest.raises(ValueError, match=r"box must have shape \[nf, 9\]"):
        ops.neighbor_list(c, b.reshape([2, 3, 3]), a, rcut, sel)
    with pytest.raises(ValueError, match=r"atype must have shape"):
        ops.neighbor_list(c, b, a[:, :10], rcut, sel)


def test_no_custom_op_env_var():
    code = "from deepmd_paddle.kernels.build import load_library; print(load_library() is not None)"
    env = dict(os.environ, DEEPMD_PADDLE_NO_CUSTOM_OP="1")
    env["PYTHONPATH"] = os.pathsep.join([str(Path(ops.__file__).resolve().parents[2]), env.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_broken_extra_library_keeps_the_core(monkeypatch, tmp_path):
    """A failing extra source costs only its own operators, and is not rebuilt every time."""
    core, extra = tmp_path / "core.cc", tmp_path / "extra.cc"
    core.write_text("// core")
    extra.write_text("// extra")
    builds = []

    def fake_build(name, sources, target):
        builds.append(name)
        if name == "extra":
            raise RuntimeError("compiler said no")
        target.write_text("")
        return ["core_op"]

    monkeypatch.setenv("DEEPMD_PADDLE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(build, "_library_parts", lambda: [("core", [core], []), ("extra", [extra], [])])
    monkeypatch.setattr(build, "_build", fake_build)
    monkeypatch.setattr(build, "_register", lambda lib: ["core_op"])
    monkeypatch.setattr(build, "_find_compiler", lambda: "c++")
    for attempt in range(2):
        monkeypatch.setattr(build, "_state", {"tried": False, "lib": None})
        with pytest.warns(RuntimeWarning, match=r"extra operators of extra.cc are unavailable .*compiler said no"):
            lib = load_library()
        assert lib.names == ("core_op",) and not hasattr(lib, "extra_op")
    assert builds == ["core", "extra"]  # the second process neither rebuilt nor retried


# ----------------------------------------------------------------------------- environment matrix
def env_inputs(kind="triclinic", dtype="float64", seed=3):
    coord, box, atype, rcut, sel = frames(kind, dtype, seed)
    nl, sh, _, _ = neighbor_list_np(coord, box, atype, rcut, sel)
    rij = build_rij_np(coord.astype(np.float64), nl, sh)
    davg, dstd = random_stats(2, sum(sel), seed)
    return rij.astype(dtype), nl, atype, davg.astype(dtype), dstd.astype(dtype), rcut


def run_env(rij, nl, atype, davg, dstd, rcut, fn=None):
    fn = fn or ops.env_mat
    t = [x if isinstance(x, paddle.Tensor) else paddle.to_tensor(x) for x in (rij, nl, atype, davg, dstd)]
    return fn(*t, rcut, RCUT_SMTH)


@pytest.mark.parametrize("kind", ["triclinic", "small", "open"])
def test_build_rij_operator_equals_paddle(kind):
    """deepmd_build_rij (inference: no graph to the coordinates) gives build_rij's numbers
    exactly, padded slots included, on two frames, also for a block of centres."""
    from deepmd_paddle.kernels.twins import build_rij

    coord, box, atype, rcut, sel = frames(kind)
    c, b, a = tensors(coord, box, atype)
    nl, sh, _, _ = ops.neighbor_list(c, b, a, rcut, sel)
    want = build_rij(c, nl, sh).numpy()
    op = load_library()
    got = op.deepmd_build_rij(c, nl, sh, paddle.arange(nl.shape[1], dtype="int64")).numpy()
    assert (nl.numpy() < 0).any() and got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    # a block of centre atoms (the lower program): rows of those atoms only
    centre = paddle.to_tensor([5, 0, 3], dtype="int64")
    blk_nl, blk_sh = paddle.gather(nl, centre, axis=1), paddle.gather(sh, centre, axis=1)
    want = build_rij(c, blk_nl, blk_sh, centre)
    np.testing.assert_array_equal(op.deepmd_build_rij(c, blk_nl, blk_sh, centre).numpy(), want.numpy())
    # its gradient in coord (there for static graphs) is build_rij's
    c.stop_gradient = False
    w = paddle.to_tensor(np.random.default_rng(1).normal(size=blk_sh.shape))
    (g_op,) = paddle.grad((op.deepmd_build_rij(c, blk_nl, blk_sh, centre) * w).sum(), c)
    (g_pd,) = paddle.grad((build_rij(c, blk_nl, blk_sh, centre) * w).sum(), c)
    np.testing.assert_allclose(g_op.numpy(), g_pd.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_env_mat_matches_numpy(kind):
    rij, nl, atype, davg, dstd, rcut = env_inputs(kind)
    rij[nl < 0] = 1e6 * np.random.default_rng(0).standard_normal(3)  # garbage in padded slots
    got = run_env(rij, nl, atype, davg, dstd, rcut).numpy()
    want = env_mat_np(rij, nl, atype, davg, dstd, rcut, RCUT_SMTH)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    if env_mat_paddle is not None:
        pure = run_env(rij, nl, atype, davg, dstd, rcut, env_mat_paddle).numpy()
        np.testing.assert_allclose(got, pure, rtol=1e-12, atol=1e-12)


def test_env_mat_float32():
    rij, nl, atype, davg, dstd, rcut = env_inputs(dtype="float32")
    got = run_env(rij, nl, atype, davg, dstd, rcut)
    assert got.dtype == paddle.float32
    want = env_mat_np(rij.astype(np.float64), nl, atype, davg.astype(np.float64), dstd.astype(np.float64), rcut, RCUT_SMTH)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-5)
    # gradient and double gradient kernels in float32 against float64
    W = np.random.default_rng(0).standard_normal(rij.shape[:-1] + (4,))
    grads = []
    for dt in ("float32", "float64"):
        r = paddle.to_tensor(rij.astype(dt), stop_gradient=False)
        w = paddle.to_tensor(W.astype(dt), stop_gradient=False)
        env = run_env(r, nl, atype, davg.astype(dt), dstd.astype(dt), rcut)
        (g,) = paddle.grad((env * w).sum(), r, create_graph=True)
        (g * g).sum().backward()
        grads.append((g.numpy().astype(np.float64), w.grad.numpy().astype(np.float64), r.grad.numpy().astype(np.float64)))
    for a, b in zip(*grads):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * np.abs(b).max())


def test_full_pipeline_matches_numpy_and_plain_paddle():
    """neighbour list -> r_ij gathered in Paddle -> env mat, both dtypes."""
    for dtype, tol in (("float64", 1e-12), ("float32", 2e-5)):
        coord, box, atype, rcut, sel = frames("triclinic", dtype, seed=4)
        davg, dstd = (paddle.to_tensor(x.astype(dtype)) for x in random_stats(2, sum(sel)))
        c, b, a = tensors(coord, box, atype)
        nl, sh, _, _ = ops.neighbor_list(c, b, a, rcut, sel)
        rij = gather_rij(c, nl, sh)
        env = ops.env_mat(rij, nl, a, davg, dstd, rcut, RCUT_SMTH).numpy()
        nl_ref, sh_ref, _, _ = neighbor_list_np(coord, box, atype, rcut, sel)
        want = env_mat_np(build_rij_np(coord.astype(np.float64), nl_ref, sh_ref), nl_ref, atype,
                          davg.numpy().astype(np.float64), dstd.numpy().astype(np.float64), rcut, RCUT_SMTH)
        # slots of tied distances may be swapped: compare per slot-sorted rows
        np.testing.assert_allclose(np.sort(env, axis=2), np.sort(want, axis=2), rtol=tol, atol=tol)


def gather_rij(coord, nlist, shift):
    """coord[j] + shift - coord[i]; traceable (only nnei is a static size)."""
    nnei = nlist.shape[2]
    idx = paddle.clip(nlist, min=0).astype("int64").reshape([0, -1, 1]).expand([-1, -1, 3])
    cj = paddle.take_along_axis(coord, idx, axis=1).reshape([0, -1, nnei, 3])
    return cj + shift - coord.unsqueeze(2)  # nf x nloc x nnei x 3


# ----------------------------------------------------------------------------- derivatives
def small_env_case():
    """One frame, few atoms, distances spread over the switching region."""
    rij, nl, atype, davg, dstd, rcut = env_inputs("ortho", seed=6)
    rij, nl, atype = rij[:1, :6], nl[:1, :6], atype[:1, :6]
    return rij, nl, atype, davg, dstd, rcut


def fd_grad(f, x, idx, h=1e-6):
    out = []
    for k in idx:
        xp, xm = x.copy(), x.copy()
        xp.flat[k] += h
        xm.flat[k] -= h
        out.append((f(xp) - f(xm)) / (2 * h))
    return np.array(out)


def test_gradient_matches_finite_differences():
    rij, nl, atype, davg, dstd, rcut = small_env_case()
    W = np.random.default_rng(1).standard_normal(rij.shape[:-1] + (4,))
    r = paddle.to_tensor(rij, stop_gradient=False)

    def scalar(x):
        return float((run_env(x, nl, atype, davg, dstd, rcut).numpy() * W).sum())

    env = run_env(r, nl, atype, davg, dstd, rcut)
    (g,) = paddle.grad((env * paddle.to_tensor(W)).sum(), r)
    g = g.numpy()
    assert np.all(g[nl < 0] == 0)
    idx = np.random.default_rng(2).choice(rij.size, 60, replace=False)
    np.testing.assert_allclose(g.flat[idx], fd_grad(scalar, rij, idx), rtol=1e-6, atol=1e-8)


def test_double_gradient_wrt_weights_matches_finite_differences():
    """L(W) = |d/drij sum(env * W)|^2: its gradient wrt W needs the JVP of the gradient op."""
    rij, nl, atype, davg, dstd, rcut = small_env_case()
    W0 = np.random.default_rng(3).standard_normal(rij.shape[:-1] + (4,))

    def loss(Wnp, create_graph=False):
        r = paddle.to_tensor(rij, stop_gradient=False)
        W = paddle.to_tensor(Wnp, stop_gradient=False)
        env = run_env(r, nl, atype, davg, dstd, rcut)
        (g,) = paddle.grad((env * W).sum(), r, create_graph=create_graph)
        return (g * g).sum(), W

    L, W = loss(W0, create_graph=True)
    L.backward()
    got = W.grad.numpy()
    idx = np.random.default_rng(4).choice(W0.size, 40, replace=False)
    want = fd_grad(lambda w: float(loss(w)[0]), W0, idx)
    np.testing.assert_allclose(got.flat[idx], want, rtol=1e-6, atol=1e-8)


def test_hessian_term_matches_finite_differences():
    """h(rij) = grad_rij(sum(env * W)) . v; dh/drij needs the second derivative of R."""
    rij, nl, atype, davg, dstd, rcut = small_env_case()
    rng = np.random.default_rng(5)
    W = paddle.to_tensor(rng.standard_normal(rij.shape[:-1] + (4,)))
    v = paddle.to_tensor(rng.standard_normal(rij.shape))

    def h(x, create_graph=False):
        r = paddle.to_tensor(x, stop_gradient=False)
        env = run_env(r, nl, atype, davg, dstd, rcut)
        (g,) = paddle.grad((env * W).sum(), r, create_graph=create_graph)
        return (g * v).sum(), r

    val, r = h(rij, create_graph=True)
    (got,) = paddle.grad(val, r)
    got = got.numpy()
    assert np.all(got[nl < 0] == 0)
    idx = np.random.default_rng(6).choice(rij.size, 60, replace=False)
    want = fd_grad(lambda x: float(h(x)[0]), rij, idx)
    np.testing.assert_allclose(got.flat[idx], want, rtol=1e-6, atol=1e-8)


def test_forces_through_coordinates_match_plain_paddle():
    """d/dcoord of a scalar of env, and a weight gradient of a force loss, op vs plain Paddle."""
    if env_mat_paddle is None:
        pytest.skip("deepmd_paddle.kernels.twins is absent")
    coord, box, atype, rcut, sel = frames("small", seed=7)
    davg, dstd = (paddle.to_tensor(x) for x in random_stats(2, sum(sel)))
    c, b, a = tensors(coord, box, atype)
    nl, sh, _, _ = ops.neighbor_list(c, b, a, rcut, sel)
    Wnp = np.random.default_rng(8).standard_normal(list(nl.shape) + [4])
    results = []
    for fn in (ops.env_mat, env_mat_paddle):
        x = c.clone()
        x.stop_gradient = False
        W = paddle.to_tensor(Wnp, stop_gradient=False)
        env = fn(gather_rij(x, nl, sh), nl, a, davg, dstd, rcut, RCUT_SMTH)
        (force,) = paddle.grad(paddle.tanh(env * W).sum(), x, create_graph=True)
        (force * force).sum().backward()
        results.append((force.numpy(), W.grad.numpy()))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-10, atol=1e-12)


def test_to_static_matches_eager():
    coord, box, atype, rcut, sel = frames("triclinic", seed=9)
    davg, dstd = (paddle.to_tensor(x) for x in random_stats(2, sum(sel)))
    c, b, a = tensors(coord, box, atype)

    def energy_and_force(x, box, atype):
        nl, sh, _, _ = ops.neighbor_list(x, box, atype, rcut, sel)
        env = ops.env_mat(gather_rij(x, nl, sh), nl, atype, davg, dstd, rcut, RCUT_SMTH)
        e = paddle.tanh(env).sum()
        return e.detach(), -paddle.grad(e, x)[0].detach()  # forces only: no outer backward

    x = c.clone()
    x.stop_gradient = False
    e0, f0 = energy_and_force(x, b, a)
    spec = [paddle.static.InputSpec([None, None, 3], "float64", stop_gradient=False),
            paddle.static.InputSpec([None, 9], "float64"), paddle.static.InputSpec([None, None], "int32")]
    static = paddle.jit.to_static(energy_and_force, input_spec=spec, full_graph=True)
    e1, f1 = static(x, b, a)
    np.testing.assert_allclose(e1.numpy(), e0.numpy(), rtol=1e-12)
    np.testing.assert_allclose(f1.numpy(), f0.numpy(), rtol=1e-10, atol=1e-12)


def test_bias_tanh_accuracy_and_derivatives():
    """The fused bias_tanh against NumPy's tanh (within a few ulp over the whole range, exact
    sign and zero), and its gradient and double gradient against the closed forms."""
    op = load_library()
    if not hasattr(op, "bias_tanh"):
        pytest.skip("the fused activation library could not be built")
    rng = np.random.default_rng(5)
    z = np.concatenate([np.linspace(-20, 20, 40000), np.geomspace(1e-12, 100, 4000), -np.geomspace(1e-12, 100, 4000),
                        [0.0, -0.0, 1e-300, -1e-300, 800.0, -800.0]]).reshape(-1, 7)
    b = rng.normal(size=7) * 1e-3
    y = op.bias_tanh(paddle.to_tensor(z), paddle.to_tensor(b)).numpy()
    ref = np.tanh(z + b)
    ulp = np.spacing(np.maximum(np.abs(ref), np.finfo(float).tiny))
    assert np.max(np.abs(y - ref) / ulp) <= 4
    assert np.array_equal(np.signbit(y), np.signbit(ref))
    # float32 is computed in float32 (no float64 round trip), also within 4 ulp of the true tanh
    z32, b32 = z.astype(np.float32), b.astype(np.float32)
    y32 = op.bias_tanh(paddle.to_tensor(z32), paddle.to_tensor(b32)).numpy()
    assert y32.dtype == np.float32
    ref32 = np.tanh((z32 + b32).astype(float))  # the sum is rounded to float32 first, as in the kernel
    ulp32 = np.spacing(np.maximum(np.abs(ref32), np.finfo(np.float32).tiny).astype(np.float32)).astype(float)
    assert np.max(np.abs(y32 - ref32) / ulp32) <= 4
    assert np.array_equal(np.signbit(y32), np.signbit(ref32))
    zt = paddle.to_tensor(rng.normal(size=(50, 7)) * 2)
    zt.stop_gradient = False
    bt = paddle.to_tensor(b)
    gy = paddle.to_tensor(rng.normal(size=(50, 7)))
    yt = op.bias_tanh(zt, bt)
    (gz,) = paddle.grad(yt, zt, grad_outputs=gy, create_graph=True)
    t = np.tanh(zt.numpy() + b)
    np.testing.assert_allclose(gz.numpy(), gy.numpy() * (1 - t * t), rtol=1e-14, atol=1e-15)
    v = rng.normal(size=(50, 7))
    (ggz,) = paddle.grad((gz * paddle.to_tensor(v)).sum(), zt)
    np.testing.assert_allclose(ggz.numpy(), -2 * t * (1 - t * t) * gy.numpy() * v, rtol=1e-13, atol=1e-14)
