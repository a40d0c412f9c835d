"""DeePMD-kit's frozen TensorFlow models (.pb) read without TensorFlow.

Fixtures (``tests/fixtures/deepmd_pb``, made by ``make.py`` there with DeePMD-kit 3.2.0 TF): small
water models, type_one_side false and true, and one with a frame parameter, with DeePMD-kit's
``DeepPot`` outputs on two frames of data_3. Every output must agree to 1e-10 relative, the
descriptor included. Graphs of older DeePMD-kit layouts and of refused kinds are made by editing
a fixture's GraphDef (``_edit``), so no test needs TensorFlow.
"""
import json
import pathlib
import re

import numpy as np
import paddle
import pytest

from deepmd_paddle.kernels import backend
from deepmd_paddle.io import tf_proto
from deepmd_paddle.io.tf_graph import load_pb, read_pb
from deepmd_paddle.io.tf_proto import GraphFileError, UnsupportedGraphError

FIX = pathlib.Path(__file__).parent / "fixtures" / "deepmd_pb"
KEYS = ("energy", "force", "virial", "atom_energy", "atom_virial")


def _ref(case):
    return np.load(FIX / f"{case}_ref.npz")


def _close(a, b, rtol=1e-10):
    """Relative to the array's scale: components near zero are held to rtol * max|b|."""
    np.testing.assert_allclose(np.reshape(a, np.shape(b)), b, rtol=rtol, atol=rtol * np.abs(b).max())


def _model_outputs(model, ref):
    nf = ref["coord"].shape[0]
    out = model(paddle.to_tensor(ref["coord"].reshape(nf, -1, 3)), paddle.to_tensor(np.tile(ref["atype"], (nf, 1))),
                paddle.to_tensor(ref["cell"].reshape(nf, 9)), do_atomic_virial=True)
    d = model.descriptor_of(paddle.to_tensor(ref["coord"][:1].reshape(1, -1, 3)), paddle.to_tensor(ref["atype"][None]),
                            paddle.to_tensor(ref["cell"][:1].reshape(1, 9)))
    return {**{k: out[k].numpy() for k in KEYS}, "descriptor": d}


@pytest.mark.parametrize("case", ["two_side", "one_side"])
def test_deeppot_parity(case):
    from deepmd_paddle.infer import DeepPot

    ref = _ref(case)
    dp = DeepPot(str(FIX / f"{case}.pb"))
    assert dp.get_type_map() == ["O", "H"] and dp.get_rcut() == 6.0 and dp.get_sel() == [46, 92]
    got = dict(zip(KEYS, dp.eval(ref["coord"], ref["cell"], ref["atype"], atomic=True)))
    got["descriptor"] = dp.eval_descriptor(ref["coord"][:1], ref["cell"][:1], ref["atype"])
    for key in KEYS + ("descriptor",):
        _close(got[key], ref[key])
    e, f, v = dp.eval(ref["nopbc_coord"], None, ref["nopbc_atype"])
    for got_k, key in ((e, "nopbc_energy"), (f, "nopbc_force"), (v, "nopbc_virial")):
        _close(got_k, ref[key])


@pytest.mark.parametrize("case", ["two_side", "one_side"])
def test_plain_paddle_path(case):
    """The EnergyModel without the C++ operators (the path the operators are tested against)."""
    ref = _ref(case)
    model = load_pb(str(FIX / f"{case}.pb"))
    model.set_kernels(backend("paddle"))
    got = _model_outputs(model, ref)
    for key in got:
        _close(got[key], ref[key])
    assert model.descriptor.type_one_side == (case == "one_side")
    assert model.min_nbor_dist == float(ref["node:train_attr/min_nbor_dist"])


@pytest.mark.parametrize("case", ["two_side", "one_side", "fparam"])
def test_constants_as_tensorflow_reads_them(case):
    ref = _ref(case)
    data, arrays = read_pb(str(FIX / f"{case}.pb"))
    m = data["model"]
    d, f = m["descriptor"], m["fitting"]
    nnei = sum(d["sel"])
    assert np.array_equal(d["@variables"]["davg"].reshape(2, nnei * 4), ref["node:descrpt_attr/t_avg"])
    assert np.array_equal(d["@variables"]["dstd"].reshape(2, nnei * 4), ref["node:descrpt_attr/t_std"])
    assert np.array_equal(f["@variables"]["bias_atom_e"].ravel(), ref["node:fitting_attr/t_bias_atom_e"])
    assert m["type_map"] == str(ref["node:model_attr/tmap"]).split()
    assert data["version"] == str(ref["node:model_attr/model_version"])
    script = json.loads((FIX / f"{case}.input.json").read_text())["model"]
    for key in ("neuron", "axis_neuron", "type_one_side", "sel", "rcut", "rcut_smth", "resnet_dt"):
        assert d[key] == script["descriptor"][key], key
    assert f["neuron"] == script["fitting_net"]["neuron"]
    assert f["numb_fparam"] == script["fitting_net"].get("numb_fparam", 0)
    if case == "fparam":
        assert np.array_equal(f["@variables"]["fparam_avg"], ref["node:fitting_attr/t_fparam_avg"])
        assert np.array_equal(f["@variables"]["fparam_inv_std"], ref["node:fitting_attr/t_fparam_istd"])


def test_fparam_model():
    """A model with a frame parameter: its descriptor and atomic energies from the imported weights
    with NumPy (the fitting input is [D, normalised fparam]), then DeepPot on it."""
    from deepmd_paddle.infer import DeepPot
    from deepmd_paddle.model import EnergyModel
    from deepmd_paddle.model.descriptor import DescrptSeA
    from deepmd_paddle.model.fitting import EnergyFitting

    ref = _ref("fparam")
    data, arrays = read_pb(str(FIX / "fparam.pb"))
    desc = DescrptSeA.deserialize(data["model"]["descriptor"], arrays, 2)
    model = EnergyModel(["O", "H"], desc, EnergyFitting(2, desc.get_dim_out(), [4], True, "float64"))  # for descriptor_of
    got = _model_outputs(model, ref)["descriptor"]
    _close(got, ref["descriptor"])
    # E_i = N_t([D_i, (fparam - avg) * inv_std]) + bias_atom_e[t]: the fitting with its frame parameter
    fit = data["model"]["fitting"]
    x = np.concatenate([got[0], np.tile((ref["fparam"][0] - fit["@variables"]["fparam_avg"])
                                        * fit["@variables"]["fparam_inv_std"], (got.shape[1], 1))], axis=1)
    atom_e = np.empty(x.shape[0])
    for t in (0, 1):
        rows = ref["atype"] == t
        y = x[rows]
        for layer in fit["nets"]["networks"][t]["layers"]:
            v = layer["@variables"]
            z = y @ v["w"] + v["b"]
            z = np.tanh(z) if layer["activation_function"] == "tanh" else z
            z = z * v["idt"] if v["idt"] is not None else z
            y = y + z if layer["resnet"] else z
        atom_e[rows] = y[:, 0] + fit["@variables"]["bias_atom_e"][t, 0]
    _close(atom_e, ref["atom_energy"][0].ravel())
    dp = DeepPot(str(FIX / "fparam.pb"))
    assert dp.get_dim_fparam() == 1 and dp.get_dim_aparam() == 0 and not dp.has_default_fparam()
    got = dict(zip(KEYS, dp.eval(ref["coord"], ref["cell"], ref["atype"], atomic=True, fparam=ref["fparam"])))
    for key in KEYS:
        _close(got[key], ref[key])
    e, f, v = dp.eval(ref["nopbc_coord"], None, ref["nopbc_atype"], fparam=ref["fparam"][0])  # [nfp]: every frame
    for got_k, key in ((e, "nopbc_energy"), (f, "nopbc_force"), (v, "nopbc_virial")):
        _close(got_k, ref[key])


def test_convert_to_dp_round_trip(tmp_path):
    from deepmd_paddle.cli import main
    from deepmd_paddle.io import load_dp

    src = FIX / "two_side.pb"
    assert main(["convert", str(src), str(tmp_path / "m.dp")]) == 0
    a, b = load_pb(str(src)), load_dp(str(tmp_path / "m.dp"))
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert np.array_equal(sa[k].numpy(), sb[k].numpy()), k
    assert b.min_nbor_dist == a.min_nbor_dist and b.get_config() == a.get_config()
    ref = _ref("two_side")
    got = _model_outputs(b, ref)
    for key in got:
        _close(got[key], ref[key])


def test_compress_and_test_commands(tmp_path, capsys):
    from deepmd_paddle.cli import main

    pb = str(FIX / "one_side.pb")
    # the minimum pair distance comes from the graph (train_attr/min_nbor_dist): no -t needed
    assert main(["compress", "-i", pb, "-o", str(tmp_path / "c.ckpt")]) == 0
    assert (tmp_path / "c.ckpt-0.safetensors").exists()
    ref = _ref("one_side")
    sys_dir = tmp_path / "sys"
    (sys_dir / "set.000").mkdir(parents=True)
    np.savetxt(sys_dir / "type.raw", ref["atype"], fmt="%d")
    (sys_dir / "type_map.raw").write_text("O\nH\n")
    np.save(sys_dir / "set.000" / "coord.npy", ref["coord"])
    np.save(sys_dir / "set.000" / "box.npy", ref["cell"])
    np.save(sys_dir / "set.000" / "energy.npy", ref["energy"].ravel())
    np.save(sys_dir / "set.000" / "force.npy", ref["force"].reshape(2, -1))
    capsys.readouterr()
    assert main(["test", "-m", pb, "-s", str(sys_dir), "-d", str(tmp_path / "d")]) == 0
    e, f = np.loadtxt(tmp_path / "d.e.out"), np.loadtxt(tmp_path / "d.f.out")
    _close(e[:, 1], e[:, 0])  # labels are DeePMD-kit's own predictions
    _close(f[:, 3:], f[:, :3])


# ----------------------------------------------------------------------------- edited graphs
def _graph(case="two_side"):
    g = tf_proto.GraphDef()
    g.ParseFromString((FIX / f"{case}.pb").read_bytes())
    return g


def _node(g, name):
    return next(n for n in g.node if n.name == name)


def _set(node, array):
    t = node.attr["value"].tensor
    t.ClearField("tensor_shape")
    for s in array.shape:
        t.tensor_shape.dim.add(size=s)
    t.ClearField("double_val")
    t.tensor_content = np.ascontiguousarray(array, dtype="<f8").tobytes()


def _write(g, path):
    path.write_bytes(g.SerializeToString())
    return str(path)


def test_old_layout(tmp_path):
    """DeePMD-kit 1.x: operator DescrptSeA, no training script (activation from the graph's
    operators), no t_bias_atom_e (the bias sits in the final layers), biases of shape [1, n],
    no sel/original_sel/out_bias/model_version nodes."""
    g = _graph()
    _node(g, "ProdEnvMatA").op = "DescrptSeA"
    bias = tf_proto.tensor_to_numpy(_node(g, "fitting_attr/t_bias_atom_e").attr["value"].tensor)
    for t in (0, 1):
        node = _node(g, f"final_layer_type_{t}/bias")
        _set(node, tf_proto.tensor_to_numpy(node.attr["value"].tensor) + bias[t])
    for node in g.node:
        if re.fullmatch(r"filter_type_\d+/bias_\d+_\d+", node.name):
            _set(node, tf_proto.tensor_to_numpy(node.attr["value"].tensor).reshape(1, -1))
    drop = {"train_attr/training_script", "fitting_attr/t_bias_atom_e", "descrpt_attr/sel", "descrpt_attr/original_sel",
            "model_attr/model_attr/t_out_bias", "model_attr/model_attr/t_out_std", "model_attr/model_version"}
    kept = [n for n in g.node if n.name not in drop]
    del g.node[:]
    g.node.extend(kept)
    model = load_pb(_write(g, tmp_path / "old.pb"))
    ref = _ref("two_side")
    got = _model_outputs(model, ref)
    for key in got:
        _close(got[key], ref[key])


def test_out_std_is_folded(tmp_path):
    """3.x scales the atomic energy by out_std; a graph whose nets are scaled by 1/out_std gives
    the same energies as the original."""
    g = _graph("one_side")
    std = np.array([2.0, 0.5])
    _set(_node(g, "model_attr/model_attr/t_out_std"), std.reshape(1, 2, 1))
    node = _node(g, "fitting_attr/t_bias_atom_e")
    _set(node, tf_proto.tensor_to_numpy(node.attr["value"].tensor) / std)
    for t in (0, 1):
        for part in ("matrix", "bias"):
            node = _node(g, f"final_layer_type_{t}/{part}")
            _set(node, tf_proto.tensor_to_numpy(node.attr["value"].tensor) / std[t])
    model = load_pb(_write(g, tmp_path / "std.pb"))
    ref = _ref("one_side")
    got = _model_outputs(model, ref)
    for key in KEYS:
        _close(got[key], ref[key])


def _minimal(op, model_type="ener"):
    """A hand-made GraphDef: a model type and one operator."""
    g = tf_proto.GraphDef()
    g.versions.producer = 1
    n = g.node.add(name="model_attr/model_type", op="Const")
    n.attr["dtype"].type = 7
    n.attr["value"].tensor.dtype = 7
    n.attr["value"].tensor.string_val.append(model_type.encode())
    g.node.add(name="o_energy", op="Sum")
    g.node.add(name=op, op=op)
    return g


@pytest.mark.parametrize("op, model_type, message", [
    ("DescrptFancy", "ener", r"DescrptFancy \(unknown descriptor\)"),
    ("ProdEnvMatAMix", "ener", r"ProdEnvMatAMix \(se_atten"),
    ("ProdEnvMatR", "ener", r"se_e2_r"),
    ("TabulateFusionSeA", "ener", "compressed model"),
    ("ProdEnvMatA", "dipole", "'dipole' model"),
    ("MatMul", "ener", "no descriptor operator"),
])
def test_refused_graphs(tmp_path, op, model_type, message):
    path = _write(_minimal(op, model_type), tmp_path / "x.pb")
    with pytest.raises(UnsupportedGraphError, match=message) as e:
        load_pb(path)
    assert "x.pb" in str(e.value)


@pytest.mark.parametrize("node, message", [
    ("spin_attr/ntypes_spin", "spin model"), ("filter_type_all/matrix_1", "no type_embed_net"),
    ("layer_0/matrix", "shared by all types"),
])
def test_refused_real_graphs(tmp_path, node, message):
    g = _graph()
    extra = g.node.add(name=node, op="Const")
    extra.attr["value"].tensor.dtype = 2
    with pytest.raises(UnsupportedGraphError, match=message):
        load_pb(_write(g, tmp_path / "x.pb"))


def test_one_filter_net_without_type_net_refused(tmp_path):
    """A type-embedding graph without its type net (and training input) is refused by its nets
    (tests/test_pb_type_embedding.py reads the whole graph)."""
    g = _graph("type_embedding")
    kept = [n for n in g.node if not n.name.startswith("type_embed_net/") and n.name != "train_attr/training_script"]
    del g.node[:]
    g.node.extend(kept)
    with pytest.raises(UnsupportedGraphError, match="no type_embed_net"):
        load_pb(_write(g, tmp_path / "x.pb"))


def test_refused_by_training_script(tmp_path):
    g = _graph()
    t = _node(g, "train_attr/training_script").attr["value"].tensor
    script = json.loads(t.string_val[0])
    script["model"]["pair_exclude_types"] = [[0, 1]]  # (the descriptor's exclude_types is read: test_types_parity)
    t.string_val[0] = json.dumps(script).encode()
    with pytest.raises(UnsupportedGraphError, match="model.pair_exclude_types"):
        load_pb(_write(g, tmp_path / "x.pb"))


def test_truncated_and_foreign_files(tmp_path):
    from deepmd_paddle.infer import DeepPot, ModelFileError

    raw = (FIX / "two_side.pb").read_bytes()
    for cut in np.linspace(1, len(raw) - 1, 25).astype(int):
        (tmp_path / "cut.pb").write_bytes(raw[:cut])
        with pytest.raises(GraphFileError, match="cut.pb"):
            load_pb(str(tmp_path / "cut.pb"))
    g = _graph()
    g.ClearField("versions")  # cut at a record boundary: every node read, the last record missing
    with pytest.raises(GraphFileError, match="truncated"):
        load_pb(_write(g, tmp_path / "cut.pb"))
    for content in (b"", b"hello, not a graph", json.dumps({"model": {}}).encode()):
        (tmp_path / "foreign.pb").write_bytes(content)
        with pytest.raises(GraphFileError):
            load_pb(str(tmp_path / "foreign.pb"))
    with pytest.raises(ModelFileError, match="foreign.pb"):
        DeepPot(str(tmp_path / "foreign.pb"))
    with pytest.raises(FileNotFoundError):
        load_pb(str(tmp_path / "missing.pb"))


def test_tensor_values():
    t = tf_proto.TensorProto(dtype=2)
    t.tensor_shape.dim.add(size=3)
    t.double_val.append(1.5)  # TensorFlow repeats the last value
    assert tf_proto.tensor_to_numpy(t).tolist() == [1.5, 1.5, 1.5]
    t.ClearField("double_val")
    assert tf_proto.tensor_to_numpy(t).tolist() == [0.0, 0.0, 0.0]
    t.tensor_content = np.arange(3, dtype="<f8").tobytes()
    assert tf_proto.tensor_to_numpy(t).tolist() == [0.0, 1.0, 2.0]
    t.tensor_content = b"\x00" * 7
    with pytest.raises(ValueError, match="7 bytes"):
        tf_proto.tensor_to_numpy(t)
    i = tf_proto.TensorProto(dtype=3)
    i.int_val.extend([46, 92])
    i.tensor_shape.dim.add(size=2)
    assert tf_proto.tensor_to_numpy(i).tolist() == [46, 92]
    h = tf_proto.TensorProto(dtype=19)
    h.half_val.append(int(np.float16(0.5).view(np.uint16)))
    assert tf_proto.tensor_to_numpy(h).item() == 0.5
    with pytest.raises(ValueError, match="DT_COMPLEX64"):
        tf_proto.tensor_to_numpy(tf_proto.TensorProto(dtype=8))


def test_lammps_adapter_reads_pb():
    from deepmd_paddle.lammps.adapter import LammpsModel

    spec = {"models": [str(FIX / "one_side.pb")], "dist": 1.0, "ener": 1.0, "units": "metal", "fparam": None,
            "aparam": None, "fparam_from_compute": False, "relative": None, "relative_v": None, "atomic": False,
            "rank": 0, "out_freq": 0, "out_file": "", "restart": False}  # what the pair style passes
    lmp = LammpsModel(json.dumps(spec))
    assert lmp.info() == (6.0, [46, 92], 0, "O H")
    assert lmp.coeff("H O", 2) == ([1, 0], "")
