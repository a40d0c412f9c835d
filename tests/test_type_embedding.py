"""se_e2_a with a type embedding (deepmd_paddle.model.descriptor_te): derivatives, invariances,
parity with per-type nets, the element table's errors, config round trip, freeze + DeepPot + ASE,
and the five-element data set."""
import os

import numpy as np
from deepmd_paddle.kernels.build import load_library
import paddle
import pytest

from conftest import assert_smooth_across_rcut, loss_batch, small_model_config, strain_virial_fd, to_tensors, kernels_for

from deepmd_paddle import config
from deepmd_paddle.config import ConfigError
from deepmd_paddle.model import EnergyModel
from deepmd_paddle.model.descriptor_te import DescrptSeATebd
from deepmd_paddle.model.elements import PropertyError, normalise, property_matrix

TYPE_MAP = ["Cu", "Ni", "Au"]
PATHS = [False, pytest.param(True, marks=pytest.mark.skipif(not (load_library() is not None), reason="no C++ operator"))]
SPECS = [  # (type_embedding, type_one_side)
    pytest.param(True, False, id="properties-centre"),
    pytest.param(["Z", "electronegativity"], True, id="two-properties"),
    pytest.param({"neuron": [2]}, False, id="learned"),
    pytest.param({"neuron": [3]}, True, id="learned-skip"),  # in_dim 4 = neuron[0]: first layer has x + ...
    # DeePMD-kit's model-level section: the type vector also feeds ONE fitting net ([D, e(t_i)])
    pytest.param(("model", {"neuron": [2, 4], "use_tebd_bias": False}), False, id="deepmd-kit-model"),
]


def te_model(spec=True, type_one_side=False, use_op=False, sel=(8, 8, 8), type_map=TYPE_MAP, neuron=None, **kw):
    cfg = small_model_config(type_one_side=type_one_side, sel=sel, **kw)
    cfg["type_map"] = list(type_map)
    if isinstance(spec, tuple):  # ("model", section): DeePMD-kit's model-level type_embedding
        cfg["type_embedding"] = spec[1]
    else:
        cfg["descriptor"]["type_embedding"] = spec
    if neuron is not None:
        cfg["descriptor"]["neuron"] = neuron
    model = EnergyModel.from_config(cfg)
    n, d = len(type_map), model.descriptor
    rng = np.random.default_rng(0)
    davg = np.zeros([n, d.nnei, 4])
    davg[..., 0] = rng.uniform(0.05, 0.2, [n, 1])  # non-zero: padded slots add G(r0)^T r0
    dstd = np.ones([n, d.nnei, 4])
    dstd[..., 0] = rng.uniform(0.2, 0.4, [n, 1])
    dstd[..., 1:] = rng.uniform(0.1, 0.3, [n, 1, 1])
    d.set_stat(davg, dstd)
    model.fitting.set_bias(-1.0 - np.arange(n))
    model.set_kernels(kernels_for(use_op))
    return model


def three_types(natoms=15, nframes=1, seed=3, kind="ortho"):
    from conftest import random_system

    coord, _, cell = random_system(natoms, nframes, kind, seed=seed)
    atype = np.tile(np.arange(natoms) % 3, (nframes, 1)).astype(np.int32)
    return coord, atype, cell


def _eval(model, coord, atype, cell, **kw):
    return {k: v.numpy() for k, v in model(*to_tensors(coord, atype, cell), **kw).items()}


# ----------------------------------------------------------------------------- derivatives
@pytest.mark.parametrize("use_op", PATHS)
@pytest.mark.parametrize("spec,one_side", SPECS)
def test_force_and_virial_are_energy_derivatives(use_op, spec, one_side):
    model = te_model(spec, one_side, use_op)
    coord, atype, cell = three_types(kind="triclinic")
    out = _eval(model, coord, atype, cell, do_atomic_virial=True)
    energy = lambda c, b=cell: _eval(model, c, atype, b)["energy"][0, 0]  # noqa: E731
    h = 1e-5
    for i in (0, 4, 8):  # one atom of each type
        for a in range(3):
            cp, cm = coord.copy(), coord.copy()
            cp[0, i, a] += h
            cm[0, i, a] -= h
            assert out["force"][0, i, a] == pytest.approx(-(energy(cp) - energy(cm)) / (2 * h), rel=1e-6, abs=1e-8)
    fd = strain_virial_fd(energy, coord, cell, h)
    np.testing.assert_allclose(out["virial"].reshape(3, 3), fd, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(out["atom_virial"].sum(1), out["virial"], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("spec,one_side", SPECS)
def test_force_loss_weight_gradient(spec, one_side):
    """d/dw of a force loss (the double gradient) equals finite differences, type embedding
    weights included."""
    model = te_model(spec, one_side, use_op=None)
    c, a, b = to_tensors(*three_types(12, 2, seed=7))
    target = paddle.to_tensor(np.random.default_rng(0).normal(size=(2, 12, 3)))

    def loss():
        return ((model(c, a, b, create_graph=True)["force"] - target) ** 2).sum()

    params = [model.descriptor.embeddings[0].layers[0].w, model.descriptor.embeddings[0].layers[2].w]
    if model.descriptor.type_embedding.net is not None:
        params.append(model.descriptor.type_embedding.net.layers[0].w)
    grads = paddle.grad(loss(), params)
    h = 1e-4
    for p, g in zip(params, grads):
        base = p.numpy().copy()
        for idx in [(0, 0), (1, 1)]:
            vals = []
            for s in (h, -h, 2 * h, -2 * h):
                v = base.copy()
                v[idx] += s
                p.set_value(v)
                vals.append(float(loss()))
            p.set_value(base)
            fd = (8 * (vals[0] - vals[1]) - (vals[2] - vals[3])) / (12 * h)  # five-point stencil, O(h^4)
            assert float(g.numpy()[idx]) == pytest.approx(fd, rel=1e-6, abs=1e-9)


@pytest.mark.skipif(not (load_library() is not None), reason="no C++ operator")
@pytest.mark.parametrize("spec,one_side", SPECS)
def test_fused_training_step_equals_autograd(spec, one_side):
    """The hand-assembled training step (train/fused_step.py) runs the type-embedding net as
    per-type nets in the C++ operators; loss and every gradient (type vectors of a learned
    embedding included) equal autograd through the Paddle layers. A first layer with a skip
    connection ("learned-skip") is not expressible that way and stays on autograd."""
    from deepmd_paddle.train import fused_step

    batch, loss_fn = loss_batch(*three_types(12, 2, seed=9, kind="triclinic"), seed=4)
    c, a, b = batch["coord"], batch["atype"], batch["box"]
    ref = te_model(spec, one_side, use_op=None)
    loss_ref, l2_ref = loss_fn(ref(c, a, b, create_graph=True), batch, 5e-4)
    loss_ref.backward()
    m = te_model(spec, one_side, use_op=None)
    if m.descriptor.skip is not None:
        assert not fused_step.supported(m)
        return
    assert fused_step.supported(m)
    loss, l2 = fused_step.step(m, loss_fn, batch, 5e-4)
    assert float(loss) == pytest.approx(float(loss_ref), rel=1e-12)
    n = 0
    for (name, p), q in zip(m.named_parameters(), ref.parameters()):
        if q.grad is None:
            assert p.grad is None or not np.any(p.grad.numpy()), name
            continue
        scale = np.abs(q.grad.numpy()).max()
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-10, atol=1e-11 * scale, err_msg=name)
        n += 1
    assert n >= 8


# ----------------------------------------------------------------------------- maths
@pytest.mark.parametrize("one_side", [True, False])
def test_equals_per_type_nets_with_type_bias(one_side):
    """N([s, e_t, e_c]) is se_e2_a's net of block t (and centre c) whose first-layer bias is
    b + e_t W_nb (+ e_c W_c): build that DescrptSeA model and compare, padded slots included."""
    model = te_model(True, one_side)
    cfg = small_model_config(type_one_side=one_side, sel=(8, 8, 8))
    cfg["type_map"] = TYPE_MAP
    ref = EnergyModel.from_config(cfg)
    ref.fitting.set_state_dict(model.fitting.state_dict())
    ref.descriptor.set_stat(model.descriptor.davg.numpy(), model.descriptor.dstd.numpy())
    ref.set_kernels(kernels_for(False))
    te = model.descriptor.type_embedding().numpy()  # 3 x 5
    net = model.descriptor.embeddings[0]
    w, b = net.layers[0].w.numpy(), net.layers[0].b.numpy()
    for idx, target in enumerate(ref.descriptor.embeddings):
        t, c = (idx, None) if one_side else (idx // 3, idx % 3)  # DeePMD-kit's index ti + t * ntypes
        bias = b + te[t] @ w[1:6] + (0 if c is None else te[c] @ w[6:11])
        target.layers[0].w.set_value(w[:1])
        target.layers[0].b.set_value(bias)
        for dst, src in zip(target.layers[1:], net.layers[1:]):
            for name in ("w", "b", "idt"):
                if getattr(src, name) is not None:
                    getattr(dst, name).set_value(getattr(src, name).numpy())
    coord, atype, cell = three_types(18, 2, seed=11)
    out, exp = _eval(model, coord, atype, cell), _eval(ref, coord, atype, cell)
    np.testing.assert_allclose(out["energy"], exp["energy"], rtol=1e-12)
    np.testing.assert_allclose(out["force"], exp["force"], atol=1e-11)
    np.testing.assert_allclose(out["virial"], exp["virial"], atol=1e-10)


@pytest.mark.parametrize("spec,one_side,neuron", [
    ({"neuron": [3]}, False, [4, 8]),  # no skip connection in the first layer
    ({"neuron": [3]}, True, [4, 8]),  # y = x + tanh(...)
    (["Z", "mass"], True, [6, 12]),  # y = [x, x] + tanh(...)
    (["Z"], False, [3, 6]),
])
def test_first_layer_split_equals_concatenated_input(spec, one_side, neuron):
    """The descriptor never builds [s, e_nb, e_c]: the net on that input, run by its Dense layers,
    gives the same G."""
    model = te_model(spec, one_side, neuron=neuron)
    d = model.descriptor
    rng = np.random.default_rng(0)
    env = paddle.to_tensor(rng.normal(size=(4, d.nnei, 4)))
    ti = paddle.to_tensor(np.array([0, 1, 2, 1], dtype=np.int32))
    tebd, slot = d.type_embedding().numpy(), np.repeat(np.arange(3), d.sel)
    x = [env.numpy()[:, :, :1], np.broadcast_to(tebd[slot], (4, d.nnei, tebd.shape[1]))]
    if not one_side:
        x.append(np.broadcast_to(tebd[ti.numpy()][:, None, :], (4, d.nnei, tebd.shape[1])))
    ref = d.embeddings[0](paddle.to_tensor(np.concatenate(x, -1))).numpy()
    t_nb, t_c = d._type_tables(env)
    g = d._embed(env[:, :, :1], paddle.gather(t_nb, paddle.to_tensor(slot)), d._centre(t_c, ti, True))
    np.testing.assert_allclose(g.numpy(), ref, rtol=1e-13, atol=1e-14)


def test_real_neighbours_only_equals_every_slot():
    """The dynamic path runs the net on real neighbours only; the static path's every-slot
    evaluation (forced here) and per-centre-type blocks give the same numbers and weight gradients."""
    model = te_model({"neuron": [2]}, False, use_op=None)
    c, a, b = to_tensors(*three_types(15, 2, seed=5))
    target = paddle.to_tensor(np.random.default_rng(1).normal(size=(2, 15, 3)))
    params = [p for p in model.parameters() if not p.stop_gradient]
    runs = []
    for uniform, one_pass in ((True, True), (False, True), (True, False)):
        model.descriptor.uniform_stats, model.descriptor.one_pass = uniform, one_pass
        out = model(c, a, b, create_graph=True)
        grads = paddle.grad(((out["force"] - target) ** 2).sum() + out["energy"].sum(), params)
        runs.append([out["energy"].numpy(), out["force"].numpy()] + [g.numpy() for g in grads])
    for other in runs[1:]:
        for x, y in zip(runs[0], other):
            np.testing.assert_allclose(x, y, rtol=1e-11, atol=1e-12 * np.abs(y).max())


def test_permutation_across_types_and_type_sensitivity():
    model = te_model(True, False, use_op=None)
    coord, atype, cell = three_types(15, 1, seed=9)
    ref = _eval(model, coord, atype, cell)
    perm = np.random.default_rng(4).permutation(15)  # mixes atoms of all three types
    assert (atype[0, perm] != atype[0]).any()
    out = _eval(model, coord[:, perm], atype[:, perm], cell)
    np.testing.assert_allclose(out["energy"], ref["energy"], rtol=1e-12)
    np.testing.assert_allclose(out["force"], ref["force"][:, perm], atol=1e-12)
    np.testing.assert_allclose(out["virial"], ref["virial"], atol=1e-11)
    swapped = atype.copy()  # exchange the elements of two atoms, positions kept: another structure
    swapped[0, [0, 1]] = atype[0, [1, 0]]
    assert abs(_eval(model, coord, swapped, cell)["energy"][0, 0] - ref["energy"][0, 0]) > 1e-4


def test_smooth_across_rcut():
    """A neighbour leaving rcut becomes a padded slot: energy and forces continuous (davg != 0)."""
    assert_smooth_across_rcut(te_model(True, True, use_op=None), [0, 1, 2])


# ----------------------------------------------------------------------------- the element table
def test_property_table_values_and_normalisation():
    raw = property_matrix(["Cu", "Ag", "Au", "Ni", "Pd"])
    np.testing.assert_allclose(raw[:, 0], [29, 47, 79, 28, 46])
    np.testing.assert_allclose(raw[:, 3], [1.90, 1.93, 2.4, 1.91, 2.20])  # Pauling (CRC)
    np.testing.assert_allclose(raw[:, 4], [11, 11, 11, 10, 10])
    z = normalise(raw)
    np.testing.assert_allclose(z.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(z.std(0), 1, rtol=1e-12)
    assert (normalise(property_matrix(["Cu", "Ag"], ["valence"])) == 0).all()  # equal for both: 0


@pytest.mark.parametrize("type_map,spec,words", [
    (["Cu", "Ar"], True, ["electronegativity", "Ar", "atomic_number"]),
    (["Cu", "Ce"], ["Z", "valence_electrons"], ["valence_electrons", "Ce"]),
    (["Cu", "Ag"], ["Z", "melting_point"], ["melting_point", "allowed", "covalent_radius"]),
    (["Cu", "Xx"], True, ["'Xx' is not an element symbol"]),
    (["Cu", "Cm"], ["mass"], ["Cm", "beyond the property table"]),
])
def test_missing_property_is_a_clear_error(tmp_path, type_map, spec, words):
    raw = {"model": {"type_map": type_map, "descriptor": {"type": "se_e2_a", "sel": [4, 4], "type_embedding": spec},
                     "fitting_net": {}},
           "training": {"training_data": {"systems": [str(_tiny_system(tmp_path))]}, "numb_steps": 1}}
    with pytest.raises(ConfigError) as err:
        config.normalize(raw)
    assert "model/descriptor/type_embedding" in str(err.value)
    for w in words:
        assert w in str(err.value)
    with pytest.raises(PropertyError):  # the same check when the class is built directly
        DescrptSeATebd(2, [4, 4], 4.0, 0.5, [4, 8], 4, False, False, "float64", type_map=type_map,
                       type_embedding=spec)


def test_learned_embedding_takes_any_type_names():
    model = te_model({"neuron": [2]}, True, type_map=["O_water", "O_ice", "H"])
    assert model.descriptor.type_embedding().shape == [3, 2]


# ----------------------------------------------------------------------------- config, serialization
def _tiny_system(tmp_path):
    from deepmd_paddle.data.demo import write_system

    path = tmp_path / "sys"
    if not path.exists():
        rng = np.random.default_rng(0)
        write_system(str(path), {"coord": rng.uniform(0, 5, (2, 6)), "box": np.tile(np.eye(3).ravel() * 5, (2, 1)),
                                 "energy": np.zeros(2)}, np.array([0, 1]), ["Cu", "Ag"])
    return path


def test_config_round_trip(tmp_path):
    """DeePMD-kit's model-level type_embedding section stays at model level and builds DeePMD-kit's
    type-embedding model (one fitting net fed with [D, e(t_i)]); deepmd_paddle's descriptor-level
    section keeps one fitting net per type. The config a model reports builds the same model;
    serialize/deserialize and checkpoints keep the numbers."""
    from deepmd_paddle.io import checkpoint

    raw = {"model": {"type_map": ["Cu", "Ni", "Au"], "type_embedding": {"neuron": [2], "seed": 5},
                     "descriptor": {"type": "se_e2_a", "sel": [8, 8, 8], "rcut": 3.5, "rcut_smth": 0.5,
                                    "neuron": [4, 8, 16], "axis_neuron": 4, "seed": 1},
                     "fitting_net": {"neuron": [8], "seed": 2}},
           "training": {"training_data": {"systems": [str(_tiny_system(tmp_path))]}, "numb_steps": 1}}
    cfg = config.normalize(raw)
    desc, tebd = cfg["model"]["descriptor"], cfg["model"]["type_embedding"]
    assert not desc["type_embedding"]
    assert tebd["neuron"] == [2] and tebd["precision"] == "float64" and tebd["use_tebd_bias"] is False
    model = EnergyModel.from_config(cfg["model"])
    assert model.fitting.mixed_types and len(model.fitting.nets) == 1 and model.descriptor.concat_output_tebd
    assert model.fitting.dim_descrpt == 16 * 4 + 2
    own = dict(raw, model={**raw["model"], "type_embedding": None,
                           "descriptor": {**raw["model"]["descriptor"], "type_embedding": {"neuron": [2]}}})
    own_model = EnergyModel.from_config(config.normalize(own)["model"])
    assert not own_model.fitting.mixed_types and len(own_model.fitting.nets) == 3
    again = config.normalize({**raw, "model": model.get_config()})
    assert again["model"]["descriptor"] == desc and again["model"]["type_embedding"] == tebd
    coord, atype, cell = three_types(12, 1, seed=2)
    ref = _eval(model, coord, atype, cell)

    d, arrays = model.serialize()
    assert d["descriptor"]["type"] == "se_e2_a_tebd" and d["descriptor"]["embeddings"]["ndim"] == 0
    back = EnergyModel.deserialize(d, lambda key: arrays[key])
    np.testing.assert_allclose(_eval(back, coord, atype, cell)["force"], ref["force"], rtol=0, atol=0)
    assert back.get_config()["type_embedding"] == tebd

    base = checkpoint.save(str(tmp_path / "model.ckpt"), 3, model, None, cfg, {})
    loaded = checkpoint.load_model(base)
    np.testing.assert_allclose(_eval(loaded, coord, atype, cell)["energy"], ref["energy"], rtol=0, atol=0)
    # a plain se_e2_a file is not read as a type-embedding one (and the reverse)
    with pytest.raises(ValueError, match="1 embedding net|embedding nets, the file has 1"):
        d2 = dict(d["descriptor"], type="se_e2_a")
        EnergyModel.deserialize(dict(d, descriptor=d2), lambda key: arrays[key])


# ----------------------------------------------------------------------------- export, DeepPot, ASE
@pytest.mark.parametrize("portable", [pytest.param(False, marks=pytest.mark.skipif(
    not (load_library() is not None), reason="no C++ operator")), True])
def test_freeze_deeppot_and_ase_match_the_dynamic_model(tmp_path, portable):
    from deepmd_paddle.io import frozen as export
    from deepmd_paddle.calculator import DP
    from deepmd_paddle.infer import DeepPot

    spec = {"neuron": [3]} if portable else ["Z", "mass", "electronegativity"]
    model = te_model(spec, portable, use_op=not portable)
    coord, atype, cell = three_types(15, 2, seed=12)
    ref = _eval(model, coord, atype, cell, do_atomic_virial=True)
    export.freeze(model, str(tmp_path / "te"), portable=portable)
    dp = DeepPot(str(tmp_path / "te"))
    assert dp.get_type_map() == TYPE_MAP
    e, f, v, ae, av = dp.eval(coord, cell, atype[0], atomic=True)
    np.testing.assert_allclose(e, ref["energy"], rtol=1e-12)
    np.testing.assert_allclose(f, ref["force"], atol=1e-11)
    np.testing.assert_allclose(v, ref["virial"], atol=1e-10)
    np.testing.assert_allclose(ae, ref["atom_energy"], atol=1e-11)
    np.testing.assert_allclose(av, ref["atom_virial"], atol=1e-10)
    from ase import Atoms

    atoms = Atoms(numbers=[[29, 28, 79][t] for t in atype[0]], positions=coord[1], cell=cell[1].reshape(3, 3), pbc=True)
    atoms.calc = DP(dp)
    assert atoms.get_potential_energy() == pytest.approx(ref["energy"][1, 0], rel=1e-12)
    np.testing.assert_allclose(atoms.get_forces(), ref["force"][1], atol=1e-11)


# ----------------------------------------------------------------------------- the five-element data
def test_alloy_dataset_and_training_steps(tmp_path):
    """The generator writes loadable five-element systems; a type-embedding model trains on them
    (statistics, sel auto, a few steps) and its loss goes down on the training batch."""
    from deepmd_paddle.data.alloy import TYPE_MAP as ALLOY, make_alloy
    from deepmd_paddle.data.system import load_system
    from deepmd_paddle.train.trainer import Trainer

    out = make_alloy(str(tmp_path / "alloy"), seed=1, compositions={"equi": (7, 7, 6, 6, 6), "ni": (4, 4, 4, 16, 4)},
                     temperatures=(600.0,), segments=1, valid_segments=1, frames_per_segment=3, every=2)
    assert out["n_train"] == 6 and out["n_valid"] == 6
    sys_ = load_system(os.path.join(out["train"], "ni"), ALLOY)
    assert np.bincount(sys_.atype, minlength=5).tolist() == [4, 4, 4, 16, 4]
    v = sys_.labels["virial"].reshape(-1, 3, 3)
    np.testing.assert_allclose(v, v.transpose(0, 2, 1), atol=1e-8)
    assert np.isfinite(sys_.labels["force"]).all()
    cfg = config.normalize({
        "model": {"type_map": ALLOY, "descriptor": {"type": "se_e2_a", "sel": "auto", "rcut": 4.5, "rcut_smth": 2.0,
                                                    "neuron": [4, 8], "axis_neuron": 4, "type_one_side": True,
                                                    "type_embedding": True},
                  "fitting_net": {"neuron": [16]}},
        "learning_rate": {"start_lr": 3e-3, "stop_lr": 1e-3, "decay_steps": 10},
        "training": {"training_data": {"systems": [out["train"]], "batch_size": 1}, "numb_steps": 12, "seed": 2,
                     "disp_training": False, "save_freq": 12}})
    tr = Trainer(cfg, str(tmp_path / "run"))
    first = float(tr.forward_step(0)[2])
    tr.run()
    tr.train_data.load_state_dict(Trainer(cfg, str(tmp_path / "run2")).train_data.state_dict())  # batch 0 again
    assert float(tr.forward_step(0)[2]) < first


def test_shipped_alloy_configs_differ_only_in_the_type_embedding(tmp_path):
    import json

    from conftest import REPO

    cfgs = []
    for name in ("alloy_type_one_side.json", "alloy_type_embedding.json"):
        with open(REPO / "configs" / name) as f:
            raw = json.load(f)
        for key in ("training_data", "validation_data"):
            raw["training"][key]["systems"] = [str(_tiny_system(tmp_path))]
        raw["model"]["type_map"] = ["Cu", "Ag", "Au", "Ni", "Pd"]
        cfgs.append(config.normalize(raw))
    plain, te = cfgs
    assert plain["model"]["descriptor"]["type_embedding"] is False
    assert te["model"]["descriptor"].pop("type_embedding") is True
    plain["model"]["descriptor"].pop("type_embedding")
    assert plain == te
