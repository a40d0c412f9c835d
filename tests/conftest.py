"""Shared fixtures: small random models and systems, and the location of ../shared."""
import pathlib

import numpy as np
import paddle
import pytest

paddle.set_default_dtype("float64")

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
REFERENCE = SHARED / "reference" / "deepmd-kit"
WATER = SHARED / "data" / "water"

needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared (water data, DeePMD-kit reference) is absent")


def small_model_config(type_one_side=False, precision="float64", resnet_dt=True, sel=(12, 24), rcut=3.5, seed=1):
    return {
        "type_map": ["O", "H"],
        "descriptor": {"type": "se_e2_a", "sel": list(sel), "rcut": rcut, "rcut_smth": 0.5, "neuron": [4, 8, 16],
                       "axis_neuron": 4, "type_one_side": type_one_side, "resnet_dt": resnet_dt,
                       "precision": precision, "seed": seed},
        "fitting_net": {"neuron": [16, 16], "resnet_dt": resnet_dt, "precision": precision, "seed": seed + 1},
    }


def kernels_for(use_op):
    """The kernels a test's ``use_op`` flag asks for: True the C++ operators, False their
    plain-Paddle twins, None the default choice (C++ when it builds)."""
    from deepmd_paddle.kernels import backend, default_backend

    return default_backend() if use_op is None else backend("cpp" if use_op else "paddle")


def make_small_model(use_op=False, **kw):
    from deepmd_paddle.model import EnergyModel

    model = EnergyModel.from_config(small_model_config(**kw))
    rng = np.random.default_rng(0)
    d = model.descriptor
    davg = np.zeros([2, d.nnei, 4])
    davg[..., 0] = rng.uniform(0.05, 0.2, [2, 1])
    dstd = np.ones([2, d.nnei, 4])
    dstd[..., 0] = rng.uniform(0.2, 0.4, [2, 1])
    dstd[..., 1:] = rng.uniform(0.1, 0.3, [2, 1, 1])
    d.set_stat(davg, dstd)
    model.fitting.set_bias([-1.0, -0.5])
    model.set_kernels(kernels_for(use_op))
    return model


def random_system(natoms=24, nframes=1, kind="ortho", seed=0, min_dist=0.9):
    """Random positions with a minimum separation; kind: ortho, triclinic, small, open."""
    rng = np.random.default_rng(seed)
    if kind == "ortho":
        box = np.diag([6.5, 7.0, 7.5])
    elif kind == "triclinic":
        box = np.array([[6.5, 0.0, 0.0], [1.3, 6.8, 0.0], [-0.9, 1.1, 7.2]])
    elif kind == "small":  # plane spacing below rcut: several images of each atom
        box = np.array([[3.1, 0.0, 0.0], [0.4, 3.3, 0.0], [0.3, -0.2, 3.4]])
    else:
        box = np.diag([6.0, 6.0, 6.0])
    coords = []
    for _ in range(nframes):
        pts = []
        while len(pts) < natoms:
            p = rng.uniform(0, 1, 3) @ box
            ok = True
            for q in pts:
                d = p - q
                if kind != "open":
                    f = d @ np.linalg.inv(box)
                    d = (f - np.round(f)) @ box
                if np.linalg.norm(d) < min_dist:
                    ok = False
                    break
            if ok:
                pts.append(p)
        coords.append(np.array(pts))
    coord = np.array(coords)
    if kind != "open":
        coord += rng.integers(-1, 2, coord.shape[:2] + (3,)) @ box  # some atoms outside the box
    atype = np.tile((np.arange(natoms) % 3 != 0).astype(np.int32), (nframes, 1))
    cell = None if kind == "open" else np.tile(box.reshape(1, 9), (nframes, 1))
    return coord, atype, cell


def to_tensors(coord, atype, cell):
    c = paddle.to_tensor(coord)
    return c, paddle.to_tensor(atype), None if cell is None else paddle.to_tensor(cell)


def loss_batch(coord, atype, cell, seed=3):
    """(batch, loss) for the fused-training-step tests: random energy, force and virial labels
    for the frames (nf x natoms) and an energy + force + virial loss at lr 5e-4 of 1e-3."""
    from deepmd_paddle.train.loss import EnerLoss

    nf, natoms = atype.shape
    c, a, b = to_tensors(coord, atype, cell)
    rng = np.random.default_rng(seed)
    batch = {"coord": c, "atype": a, "box": b, "natoms": natoms,
             "energy": paddle.to_tensor(rng.normal(size=(nf, 1))), "find_energy": 1.0,
             "force": paddle.to_tensor(rng.normal(size=(nf, natoms, 3))), "find_force": 1.0,
             "virial": paddle.to_tensor(rng.normal(size=(nf, 9))), "find_virial": 1.0}
    loss_fn = EnerLoss(1e-3, start_pref_e=0.3, limit_pref_e=1.0, start_pref_f=100, limit_pref_f=1.0,
                       start_pref_v=0.2, limit_pref_v=0.5)
    return batch, loss_fn


def assert_smooth_across_rcut(model, types):
    """Atom 2 of three (``types``) moves from just inside to just outside rcut of atom 0: it
    becomes a padded slot, and energy and forces stay continuous (to 1e-9)."""
    rcut = model.get_rcut()
    coord = np.array([[[0.0, 0.0, 0.0], [1.0, 0.2, 0.1], [0.0, 0.0, rcut - 1e-7]]])
    atype = np.array([types], dtype=np.int32)
    outs = []
    for z in (rcut - 1e-7, rcut + 1e-7):
        coord[0, 2, 2] = z
        outs.append({k: v.numpy() for k, v in model(*to_tensors(coord, atype, None)).items()})
    a, b = outs
    assert abs(a["energy"][0, 0] - b["energy"][0, 0]) < 1e-9
    np.testing.assert_allclose(a["force"], b["force"], atol=1e-9)


def strain_virial_fd(energy, coord, cell, h):
    """The virial as the finite difference of the energy under a strain: -dE/d(eps_ab) with
    coordinates and cell both mapped by (1 + eps); ``energy(coord, cell)`` of one frame."""
    box, fd = np.asarray(cell).reshape(3, 3), np.zeros((3, 3))
    for a in range(3):
        for b in range(3):
            es = []
            for s in (h, -h):
                eps = np.eye(3)
                eps[a, b] += s
                es.append(energy(coord @ eps, (box @ eps).reshape(1, 9)))
            fd[a, b] = -(es[0] - es[1]) / (2 * h)
    return fd
