"""Model files checked on load: a checkpoint or .dp/.yaml whose tensors do not fit its own config,
hold NaN, or are truncated or garbled gives an error naming the file (and the tensor, with both
shapes); never random weights or NaN energies."""
import json
import os

import h5py
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from conftest import make_small_model, random_system
from deepmd_paddle.io.load import load_model
from deepmd_paddle.infer import DeepPot
from deepmd_paddle.io.dp_format import load_dp, save_dp
from deepmd_paddle.io import checkpoint
from deepmd_paddle.io.checkpoint import CorruptCheckpoint


@pytest.fixture()
def ckpt(tmp_path):
    """A checkpoint of the small model (with Adam slots) and its base path."""
    import paddle

    model = make_small_model()
    opt = paddle.optimizer.Adam(parameters=model.parameters())
    coord, atype, cell = random_system(6)
    model(paddle.to_tensor(coord), paddle.to_tensor(atype), paddle.to_tensor(cell))["energy"].sum().backward()
    opt.step()
    base = checkpoint.save(str(tmp_path / "model.ckpt"), 7, model, opt, {"model": model.get_config()}, {}, run="r1")
    return model, base


def _edit_json(base, edit):
    meta = json.loads(open(base + ".json").read())
    edit(meta)
    with open(base + ".json", "w") as f:
        json.dump(meta, f)


def _edit_tensors(base, edit, header=None):
    tensors = {k: v.copy() for k, v in load_file(base + ".safetensors").items()}
    edit(tensors)
    header = header or {"format": checkpoint.FORMAT, "step": "7", "run": "r1"}
    save_file(tensors, base + ".safetensors", metadata=header)


def test_checkpoint_round_trip_loads(ckpt):
    model, base = ckpt
    loaded = checkpoint.load_model(base)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(loaded.state_dict()[k].numpy(), v.numpy())
    assert DeepPot(base).get_type_map() == ["O", "H"]  # a checkpoint base, which is no file itself


def test_config_that_does_not_fit_the_tensors_names_tensor_and_shapes(ckpt):
    _, base = ckpt

    def wider(meta):
        meta["config"]["model"]["fitting_net"]["neuron"] = [32, 32]
    _edit_json(base, wider)
    with pytest.raises(CorruptCheckpoint, match=r"model.ckpt-7.safetensors: tensor fitting.nets.0.layers.0.w has "
                                                r"shape \[64, 16\], the model of its config needs \[64, 32\]"):
        checkpoint.load_model(base)
    with pytest.raises(ValueError, match=r"tensor fitting.nets.0.layers.0.w has shape \[64, 16\]"):
        DeepPot(os.path.dirname(base))  # the same error through the inference API, no "Skip loading"


def test_nan_weight_is_refused(ckpt):
    _, base = ckpt

    def poison(t):
        t["model.descriptor.embeddings.0.layers.1.w"][0, 3] = np.nan
    _edit_tensors(base, poison)
    with pytest.raises(CorruptCheckpoint, match=r"tensor descriptor.embeddings.0.layers.1.w holds 1 NaN/inf value"):
        load_model(base)


def test_optimizer_slot_of_wrong_shape_is_refused(ckpt):
    import paddle

    model, base = ckpt

    def shrink(t):
        key = "optim.fitting.nets.0.layers.0.w.moment1_0"
        t[key] = t[key][:, :1]
    _edit_tensors(base, shrink)
    tensors, meta = checkpoint.load(base)
    opt = paddle.optimizer.Adam(parameters=model.parameters())
    with pytest.raises(CorruptCheckpoint, match=r"tensor optim.fitting.nets.0.layers.0.w.moment1_0 has shape "
                                                r"\[64, 1\], the model needs \[64, 16\]"):
        checkpoint.load_optimizer_tensors(model, opt, tensors, base + ".safetensors")


@pytest.mark.parametrize("damage, message", [
    (lambda b: open(b + ".safetensors", "r+b").truncate(3000), r"model.ckpt-7.safetensors: not a readable safetensors"),
    (lambda b: open(b + ".json", "wb").write(os.urandom(4000)), r"model.ckpt-7.json: not a readable checkpoint desc"),
    (lambda b: open(b + ".json", "w").write('{"format": "deepmd_paddle.checkpoint/1", "con'),
     r"model.ckpt-7.json: not a readable checkpoint description"),
])
def test_unreadable_checkpoint_files_are_named(ckpt, damage, message):
    _, base = ckpt
    damage(base)
    with pytest.raises(CorruptCheckpoint, match=message):
        checkpoint.load(base)


def test_json_and_tensors_of_two_checkpoints_are_refused(ckpt, tmp_path):
    model, base = ckpt
    other = checkpoint.save(str(tmp_path / "other" / "model.ckpt"), 7, model, None, {"model": model.get_config()},
                            {}, run="r2")
    os.replace(other + ".safetensors", base + ".safetensors")  # same step, another run
    with pytest.raises(CorruptCheckpoint, match=r"written with run 'r2' but .*model.ckpt-7.json says 'r1': the two "
                                                r"files come from different checkpoints"):
        checkpoint.load(base)


@pytest.fixture()
def dp_file(tmp_path):
    path = str(tmp_path / "model.dp")
    save_dp(make_small_model(), path)
    return path


def _edit_dp(path, edit):
    with h5py.File(path, "r+") as f:
        data = json.loads(f.attrs["json"])
        edit(f, data)


def _fitting_ref(data, layer, var):
    return data["model"]["fitting"]["nets"]["networks"][0]["layers"][layer]["@variables"][var].lstrip("/")


def test_dp_round_trip_and_damaged_files(dp_file, tmp_path):
    load_dp(dp_file)  # the intact file loads
    half = str(tmp_path / "half.dp")
    with open(dp_file, "rb") as f, open(half, "wb") as g:
        g.write(f.read()[: os.path.getsize(dp_file) // 2])
    with pytest.raises(ValueError, match=r"half.dp: not an HDF5 .dp file \(.*truncated file"):
        load_dp(half)
    (tmp_path / "random.dp").write_bytes(os.urandom(3000))
    with pytest.raises(ValueError, match=r"random.dp: not an HDF5 .dp file"):
        load_dp(str(tmp_path / "random.dp"))
    (tmp_path / "random.yaml").write_bytes(os.urandom(3000))
    with pytest.raises(ValueError, match=r"random.yaml: not a readable YAML model file"):
        load_dp(str(tmp_path / "random.yaml"))


def test_dp_nan_and_shapes_and_missing_arrays(dp_file):
    def nan(f, data):
        key = _fitting_ref(data, 0, "b")
        f[key][3] = np.nan
    _edit_dp(dp_file, nan)
    with pytest.raises(ValueError, match=r"model.dp: tensor fitting.nets.0.layers.0.b holds 1 NaN/inf"):
        load_dp(dp_file)


def test_dp_description_that_does_not_fit_its_arrays(dp_file, tmp_path):
    def neuron(f, data):
        data["model"]["descriptor"]["neuron"] = [5, 10, 20]
        f.attrs["json"] = json.dumps(data)
    _edit_dp(dp_file, neuron)
    with pytest.raises(ValueError, match=r"model.dp: tensor descriptor.embeddings.0.layers.0.w has shape \[1, 4\], "
                                         r"the model of its config needs \[1, 5\]"):
        load_dp(dp_file)
    other = str(tmp_path / "missing.dp")
    save_dp(make_small_model(), other)

    def drop(f, data):
        del f[_fitting_ref(data, 1, "w")]
    _edit_dp(other, drop)
    with pytest.raises(ValueError, match=r"missing.dp: the model refers to array '/variable_\d+', which the file "
                                         r"does not hold"):
        load_dp(other)
