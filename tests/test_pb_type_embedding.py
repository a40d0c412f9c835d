"""DeePMD-kit's type-embedding models (se_e2_a + the model-level ``type_embedding`` section, the
TensorFlow backend's "concat" mode, and se_a_ebd_v2, its "strip" mode): read from their frozen
graphs, built from their inputs, trained.

Fixtures (``tests/fixtures/deepmd_pb``, ``make.py`` there, DeePMD-kit 3.2.0 TF): ``type_embedding``
(type_one_side, a one-layer type net without biases), ``type_embedding_two_side`` (centre and
neighbour vectors in the embedding net, skip connections with timesteps in the type net), each
trained 60 steps with DeePMD-kit's outputs on two frames of data_3; ``type_embedding_init`` (the
one-side input frozen after 0 steps: DeePMD-kit's initial weights for its seeds); ``strip``,
``strip_two_side``, ``strip_init``: the same for se_a_ebd_v2.
"""
import json
import pathlib

import numpy as np
import paddle
import pytest

from deepmd_paddle.config import normalize_model
from deepmd_paddle.io.tf_graph import load_pb, read_pb
from deepmd_paddle.io.tf_proto import UnsupportedGraphError
from deepmd_paddle.kernels import backend
from deepmd_paddle.model import EnergyModel

FIX = pathlib.Path(__file__).parent / "fixtures" / "deepmd_pb"
KEYS = ("energy", "force", "virial", "atom_energy", "atom_virial")
CASES = ["type_embedding", "type_embedding_two_side", "strip", "strip_two_side"]


def _close(a, b, rtol=1e-10):
    np.testing.assert_allclose(np.reshape(a, np.shape(b)), b, rtol=rtol, atol=rtol * np.abs(b).max())


@pytest.mark.parametrize("case", CASES)
def test_deeppot_parity(case):
    """Every output of DeePMD-kit TF's DeepPot to 1e-10, eval_descriptor (D without the type
    vector, as DeePMD-kit's) and an open cluster included."""
    from deepmd_paddle.infer import DeepPot

    ref = np.load(FIX / f"{case}_ref.npz")
    dp = DeepPot(str(FIX / f"{case}.pb"))
    got = dict(zip(KEYS, dp.eval(ref["coord"], ref["cell"], ref["atype"], atomic=True)))
    got["descriptor"] = dp.eval_descriptor(ref["coord"][:1], ref["cell"][:1], ref["atype"])
    for key in KEYS + ("descriptor",):
        _close(got[key], ref[key])
    e, f, v = dp.eval(ref["nopbc_coord"], None, ref["nopbc_atype"])
    for got_k, key in ((e, "nopbc_energy"), (f, "nopbc_force"), (v, "nopbc_virial")):
        _close(got_k, ref[key])


@pytest.mark.parametrize("case", CASES)
def test_structure_and_plain_paddle_path(case):
    ref = np.load(FIX / f"{case}_ref.npz")
    model = load_pb(str(FIX / f"{case}.pb"))
    desc, fit = model.descriptor, model.fitting
    assert desc.concat_output_tebd and fit.mixed_types and len(fit.nets) == 1
    assert desc.type_one_side == (case in ("type_embedding", "strip"))
    assert hasattr(desc, "type_net") == case.startswith("strip")
    assert fit.dim_descrpt == desc.get_dim_out() + desc.type_embedding.dim
    tnet = desc.type_embedding.net
    assert all(layer.b is None for layer in tnet.layers)  # DeePMD-kit's use_tebd_bias: false
    assert any(layer.idt is not None for layer in tnet.layers) == case.endswith("two_side")
    model.set_kernels(backend("paddle"))
    nf = ref["coord"].shape[0]
    out = model(paddle.to_tensor(ref["coord"].reshape(nf, -1, 3)), paddle.to_tensor(np.tile(ref["atype"], (nf, 1))),
                paddle.to_tensor(ref["cell"].reshape(nf, 9)), do_atomic_virial=True)
    for key in KEYS:
        _close(out[key].numpy(), ref[key])
    # the section a checkpoint of this model stores: DeePMD-kit's layout (type_embedding at model level)
    cfg = model.get_config()
    assert cfg["type_embedding"]["neuron"] == desc.type_embedding.config["neuron"]
    assert not cfg["descriptor"].get("type_embedding")
    assert cfg["descriptor"]["type"] == ("se_a_ebd_v2" if case.startswith("strip") else "se_e2_a")


@pytest.mark.parametrize("case, nparams", [("type_embedding_init", 17), ("strip_init", 23)])
def test_initial_weights_as_deepmd_kit(case, nparams):
    """The input of <case>.pb, built here with its seeds: every weight (type net, embedding
    net(s), the shared fitting net) bit for bit what dp --tf train starts from."""
    tf_model = load_pb(str(FIX / f"{case}.pb"))
    section = json.loads((FIX / f"{case}.input.json").read_text())["model"]
    ours = EnergyModel.from_config(normalize_model(section))
    a, b = dict(tf_model.named_parameters()), dict(ours.named_parameters())
    assert sorted(a) == sorted(b) and len(a) == nparams
    for name in a:
        assert np.array_equal(a[name].numpy(), b[name].numpy()), name


@pytest.mark.parametrize("case", ["type_embedding_two_side", "strip_two_side"])
def test_round_trip_and_training_step(tmp_path, case):
    """Serialized and read back (our .dp layout) the same numbers; forces by finite differences;
    the force-loss double gradient reaches the type net, the embedding net and the fitting net,
    also with an untrained (constant) type embedding."""
    data, arrays = read_pb(str(FIX / f"{case}.pb"))
    model = EnergyModel.deserialize(data["model"], arrays)
    d, arr = model.serialize()
    again = EnergyModel.deserialize(d, lambda k: arr[k])
    rng = np.random.default_rng(3)
    coord = paddle.to_tensor(rng.uniform(0, 7.0, (1, 16, 3)))
    atype = paddle.to_tensor(np.array([[0] * 6 + [1] * 10]))
    box = paddle.to_tensor((np.eye(3) * 7.5).reshape(1, 9))
    o1, o2 = model(coord, atype, box), again(coord, atype, box)
    for key in ("energy", "force", "virial"):
        assert np.array_equal(o1[key].numpy(), o2[key].numpy()), key
    h, c = 1e-5, coord.numpy()
    for atom, axis in ((2, 0), (11, 2)):
        cp, cm = c.copy(), c.copy()
        cp[0, atom, axis] += h
        cm[0, atom, axis] -= h
        fd = -(model(paddle.to_tensor(cp), atype, box)["energy"] - model(paddle.to_tensor(cm), atype, box)["energy"])
        np.testing.assert_allclose(fd.numpy()[0, 0] / (2 * h), o1["force"].numpy()[0, atom, axis], rtol=1e-6, atol=1e-7)  # E ~ 1e3 eV: roundoff / h ~ 1e-8
    for frozen in (False, True):
        for p in model.descriptor.type_embedding.parameters():
            p.stop_gradient = frozen
        out = model(coord, atype, box, create_graph=True)
        params = [(n, p) for n, p in model.named_parameters() if not p.stop_gradient]
        grads = paddle.grad((out["force"] ** 2).sum(), [p for _, p in params], allow_unused=True)
        missing = [n for (n, _), g in zip(params, grads) if g is None or not np.any(g.numpy())]
        assert missing == ["fitting.nets.0.layers.3.b"], missing  # the output bias only moves the energy


@pytest.mark.parametrize("case", ["type_embedding_two_side", "strip"])
def test_frozen_program_matches_tensorflow(tmp_path, case):
    """Frozen here (static graphs: the type vector joins the fitting input in the program too),
    DeepPot on the frozen model still gives DeePMD-kit's numbers."""
    from deepmd_paddle.infer import DeepPot
    from deepmd_paddle.io import frozen

    ref = np.load(FIX / f"{case}_ref.npz")
    frozen.freeze(load_pb(str(FIX / f"{case}.pb")), str(tmp_path / "te"))
    dp = DeepPot(str(tmp_path / "te"))
    got = dict(zip(KEYS, dp.eval(ref["coord"], ref["cell"], ref["atype"], atomic=True)))
    for key in KEYS:
        _close(got[key], ref[key])


def test_compress_refused_by_name():
    from deepmd_paddle.model.tabulate import compress_model

    model = load_pb(str(FIX / "type_embedding.pb"))
    with pytest.raises(ValueError, match="type embedding are not compressed"):
        compress_model(model)


def test_strip_descriptor_trainable_false_fixes_both_nets():
    section = json.loads((FIX / "strip_init.input.json").read_text())["model"]
    section["descriptor"]["trainable"] = False
    model = EnergyModel.from_config(normalize_model(section))
    fixed = sorted(n for n, p in model.named_parameters() if p.stop_gradient)
    assert fixed == sorted(n for n, _ in model.descriptor.named_parameters(prefix="descriptor")
                           if not n.startswith("descriptor.type_embedding"))
    assert any(n.startswith("descriptor.type_net") for n in fixed)


def test_strip_round_trip_keeps_exclude_types_and_trainable():
    section = json.loads((FIX / "strip_init.input.json").read_text())["model"]
    section["descriptor"].update(exclude_types=[[0, 1]], trainable=False)
    model = EnergyModel.from_config(normalize_model(section))
    d, arrays = model.serialize()
    back = EnergyModel.deserialize(d, lambda k: arrays[k])
    assert back.descriptor.serialize({})["exclude_types"] == [[0, 1]]
    assert all(p.stop_gradient for n, p in back.named_parameters()
               if n.startswith("descriptor.") and not n.startswith("descriptor.type_embedding"))
    rng = np.random.default_rng(4)
    coord = paddle.to_tensor(rng.uniform(0, 7.0, (1, 12, 3)))
    atype = paddle.to_tensor(np.array([[0] * 4 + [1] * 8]))
    box = paddle.to_tensor((np.eye(3) * 7.5).reshape(1, 9))
    assert np.array_equal(model(coord, atype, box)["force"].numpy(), back(coord, atype, box)["force"].numpy())
