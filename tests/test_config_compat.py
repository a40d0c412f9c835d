"""DeePMD-kit's aliases and older layouts, type_map left out, ``dpp doc-train-input``, and the
output-folder check of ``dpp train``."""
import json
import math

import numpy as np
import pytest

from deepmd_paddle import cli, config
from deepmd_paddle.config import ConfigError
from deepmd_paddle.data.demo import write_system


def _system(root, name, types, names=None):
    path = root / name
    rng = np.random.default_rng(1)
    n = len(types)
    write_system(str(path), {"coord": rng.uniform(0, 6, (2, 3 * n)), "box": np.tile(np.eye(3).ravel() * 6, (2, 1)),
                             "energy": np.zeros(2)}, np.asarray(types), names or ["A", "B", "C"])
    if names is None:
        (path / "type_map.raw").unlink()
    return str(path)


def _raw(system, **training):
    return {"model": {"type_map": ["Cu", "Ag"], "descriptor": {"type": "se_a", "sel": [8, 8], "rcut": 4.0,
                                                               "neuron": [4, 8], "n_axis_neuron": 4},
                      "fitting_net": {"n_neuron": [8]}},
            "loss": {"type": "ener_hess"},
            "training": {"training_data": {"systems": [system], "sys_weights": [1.0],
                                           "auto_prob_style": "prob_uniform"},
                         "validation_data": {"systems": [system], "numb_batch": 2}, **training}}


@pytest.mark.parametrize("steps_key", ["numb_steps", "stop_batch", "num_steps", "num_step", "numb_step"])
def test_deepmd_kit_aliases(tmp_path, steps_key):
    sys_ = _system(tmp_path, "s", [0, 1, 0, 1], ["Cu", "Ag"])
    cfg = config.normalize(_raw(sys_, **{steps_key: 7}))
    desc, fit, tr = cfg["model"]["descriptor"], cfg["model"]["fitting_net"], cfg["training"]
    assert desc["type"] == "se_e2_a" and desc["axis_neuron"] == 4 and fit["neuron"] == [8]
    assert cfg["loss"]["type"] == "ener" and tr["numb_steps"] == 7
    assert tr["training_data"]["sys_probs"] == [1.0] and tr["training_data"]["auto_prob"] == "prob_uniform"
    assert tr["validation_data"]["numb_btch"] == 2 and tr["validation_data"]["batch_size"] == "auto"
    assert cfg["learning_rate"]["stop_lr"] == 5e-8  # DeePMD-kit 3.2's default
    for alias in ("numb_epoch", "num_epoch", "num_epochs", "numb_epochs"):
        tr_alias = config.normalize(_raw(sys_, **{alias: 2}))["training"]
        assert tr_alias["numb_epoch"] == 2 and "numb_steps" not in tr_alias  # steps from the data (epoch_steps)
    with pytest.raises(ConfigError, match="numb_steps or training/numb_epoch is required"):
        config.normalize(_raw(sys_))


def test_v1_layout_and_moved_keys(tmp_path, caplog):
    sys_ = _system(tmp_path, "s", [0, 1, 0, 1], ["Cu", "Ag"])
    raw = _raw(sys_)
    tr = raw["training"]
    del tr["training_data"], tr["validation_data"]
    tr.update(systems=[sys_], set_prefix="set", batch_size=2, stop_batch=400, numb_test=5, warmup_steps=0,
              opt_type="Adam", adam_beta1=0.9)
    raw["learning_rate"] = {"start_lr": 1e-3, "decay_steps": 100, "decay_rate": 0.9}
    cfg = config.normalize(raw)
    assert cfg["training"]["training_data"] == {"systems": [sys_], "batch_size": 2, "auto_prob": "prob_sys_size",
                                                "sys_probs": None, "fmt": None}
    # DeePMD-kit's conversion: stop_lr = start_lr * decay_rate^(stop_batch / decay_steps), decay_rate dropped
    assert cfg["learning_rate"]["stop_lr"] == pytest.approx(1e-3 * 0.9 ** 4, rel=1e-14)
    assert cfg["learning_rate"]["decay_rate"] is None and "optimizer" not in cfg
    text = caplog.text
    for words in ("1.x layout", "numb_test", "set_prefix", "training/warmup_steps moved", "training/opt_type"):
        assert words in text
    raw["training"]["opt_type"] = "LKF"
    with pytest.raises(ConfigError, match="optimizer/type: 'LKF' is a DeePMD-kit type"):
        config.normalize(raw)
    raw["training"]["training_data"] = {"systems": [sys_]}
    with pytest.raises(ConfigError, match="both training/systems"):
        config.normalize(raw)


def test_v0_layout(tmp_path, caplog):
    sys_ = _system(tmp_path, "s", [0, 1, 0, 1], ["O", "H"])
    v0 = {"use_smooth": True, "sel_a": [8, 8], "rcut": 4.0, "rcut_smth": 0.5, "filter_neuron": [4, 8], "axis_neuron": 4,
          "fitting_neuron": [8], "coord_norm": True, "systems": [sys_], "stop_batch": 10, "batch_size": 1,
          "start_lr": 0.005, "decay_steps": 5, "decay_rate": 0.5, "seed": 3, "disp_freq": 5, "numb_test": 1,
          "save_freq": 5, "save_ckpt": "model.ckpt", "disp_training": True, "time_training": True}
    cfg = config.normalize(v0)
    desc = cfg["model"]["descriptor"]
    assert cfg["model"]["type_map"] == ["O", "H"]  # from type_map.raw
    assert desc["rcut_smth"] == 0.5 and desc["resnet_dt"] is False and desc["seed"] == 3
    assert cfg["model"]["fitting_net"]["resnet_dt"] is True and cfg["training"]["numb_steps"] == 10
    assert cfg["learning_rate"]["stop_lr"] == pytest.approx(0.005 * 0.5 ** 2, rel=1e-14)
    assert "not read by the conversion: coord_norm" in caplog.text
    with pytest.raises(ConfigError, match=r"rcut_smth must satisfy 0 <= rcut_smth < rcut = 4.0, got 4.0"):
        config.normalize({k: v for k, v in v0.items() if k != "rcut_smth"})  # the conversion's rcut_smth = rcut
    with pytest.raises(ConfigError, match="'disp_freq' is required"):
        config.normalize({k: v for k, v in v0.items() if k != "disp_freq"})
    with pytest.raises(ConfigError, match="'loc_frame' is a DeePMD-kit type"):
        config.normalize({**v0, "use_smooth": False})


def test_type_map_from_the_data(tmp_path):
    a = _system(tmp_path, "a", [0, 1, 1], ["O", "H"])
    b = _system(tmp_path, "b", [0, 2, 2], ["O", "H", "C"])
    raw = _raw(a, numb_steps=1)
    del raw["model"]["type_map"]
    raw["model"]["descriptor"]["sel"] = "auto"
    raw["training"]["training_data"] = {"systems": [a, b]}
    raw["training"]["validation_data"] = None
    assert config.normalize(raw)["model"]["type_map"] == ["O", "H", "C"]
    c = _system(tmp_path, "c", [0, 3])  # no type_map.raw: the indices alone
    raw["training"]["training_data"]["systems"] = [a, c]
    assert config.normalize(raw)["model"]["type_map"] == ["O", "H", "type_2", "type_3"]
    raw["model"]["descriptor"]["sel"] = [4, 4, 4, 4, 4]  # sel counts the types too
    assert config.normalize(raw)["model"]["type_map"] == ["O", "H", "type_2", "type_3", "type_4"]
    d = _system(tmp_path, "d", [0, 1], ["H", "O"])
    raw["training"]["training_data"]["systems"] = [a, d]
    with pytest.raises(ConfigError, match=r"name type 0 differently: 'O' in .*a/type_map.raw, 'H' in .*d/type_map"):
        config.normalize(raw)
    raw["training"]["training_data"] = {"systems": [a], "fmt": "deepmd/npy"}
    with pytest.raises(ConfigError, match="model/type_map is required when training/training_data/fmt is set"):
        config.normalize(raw)


# ----------------------------------------------------------------------------- the command line
def test_doc_train_input(capsys):
    assert cli.main(["doc-train-input"]) == 0
    rst = capsys.readouterr().out
    assert "argument path: ``model[standard]/descriptor[se_e2_a]/sel``" in rst
    assert "default: ``[10, 20, 40]``" in rst
    assert "[deepmd_paddle: not supported yet; accepted only at its default (0).]" in rst  # dim_case_embd
    assert cli.main(["doc-train-input", "--out-type", "json_schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert "model" in schema["properties"] and schema["properties"]["training"]["type"] == ["object"]
    assert cli.main(["doc-train-input", "--out-type", "json"]) == 0
    sections = json.loads(capsys.readouterr().out)
    assert [s["name"] for s in sections] == ["model", "learning_rate", "optimizer", "loss", "training",
                                             "validating", "nvnmd"]


def test_train_refuses_an_output_folder_it_cannot_make_before_reading_data(tmp_path, capsys):
    sys_ = _system(tmp_path, "s", [0, 1, 0, 1], ["Cu", "Ag"])
    (tmp_path / "blocker").write_text("a file where a folder should be")
    raw = _raw(sys_, numb_steps=1, save_ckpt="blocker/model.ckpt")
    (tmp_path / "in.json").write_text(json.dumps(raw))
    assert cli.main(["train", str(tmp_path / "in.json"), "--outdir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "training/save_ckpt: cannot make the folder" in err and "blocker" in err
    assert not (tmp_path / "lcurve.out").exists()


def test_refusal_message_names_the_file(tmp_path):
    sys_ = _system(tmp_path, "s", [0, 1, 0, 1], ["Cu", "Ag"])
    raw = _raw(sys_, numb_steps=1)
    raw["loss"]["start_pref_e"] = -math.inf
    (tmp_path / "in.json").write_text(json.dumps(raw))
    with pytest.raises(ConfigError, match=f"^{tmp_path}/in.json: loss/start_pref_e: got -inf"):
        config.load(str(tmp_path / "in.json"))
