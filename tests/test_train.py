"""Training: config checking, learning rate and loss against their formulas, the trainer
(loss goes down, restart and Ctrl-C continue the same trajectory bit for bit, init-model)."""
import json
import math
import os
import signal

import numpy as np
import paddle
import pytest

from conftest import REFERENCE, REPO, WATER, needs_shared
from deepmd_paddle import config
from deepmd_paddle.config import ConfigError
from deepmd_paddle.data.demo import make_demo
from deepmd_paddle.io import checkpoint
from deepmd_paddle.train.loss import EnerLoss
from deepmd_paddle.train.lr import LearningRateExp
from deepmd_paddle.train.trainer import Trainer


@pytest.fixture(scope="module")
def emt(tmp_path_factory):
    return make_demo(str(tmp_path_factory.mktemp("emt")), seed=7, segments=2, valid_segments=1,
                     frames_per_segment=5, every=2, n_ag=4)


def tiny_config(data: dict, **training) -> dict:
    """A small model on the EMT demo data, DeePMD-kit keys."""
    cfg = {
        "model": {"type_map": ["Cu", "Ag"],
                  "descriptor": {"type": "se_e2_a", "sel": "auto", "rcut": 4.0, "rcut_smth": 2.0, "neuron": [4, 8],
                                 "axis_neuron": 4, "type_one_side": True},
                  "fitting_net": {"neuron": [16, 16]}},
        "learning_rate": {"start_lr": 3e-3, "stop_lr": 1e-4, "decay_steps": 10},
        "loss": {"start_pref_e": 0.2, "limit_pref_e": 1, "start_pref_f": 100, "limit_pref_f": 1,
                 "start_pref_v": 0.02, "limit_pref_v": 0.1},
        "training": {"training_data": {"systems": [data["train"]], "batch_size": 2},
                     "validation_data": {"systems": [data["valid"]], "batch_size": 3, "numb_btch": 2},
                     "numb_steps": 20, "seed": 3, "disp_freq": 5, "save_freq": 10},
    }
    cfg["training"].update(training)
    return config.normalize(cfg)


def _params(model):
    return {k: v.numpy().copy() for k, v in model.state_dict().items()}


def _lcurve(path):
    return np.loadtxt(os.path.join(path, "lcurve.out"), ndmin=2)


# ----------------------------------------------------------------------------- config
@needs_shared
def test_deepmd_kit_input_accepted_unchanged():
    cfg = config.load(str(REFERENCE / "water_se_e2_a_two_side.input.json"))
    assert cfg["training"]["training_data"]["systems"][0].endswith(os.path.join("data", "water", "data_0"))
    assert os.path.isdir(cfg["training"]["validation_data"]["systems"][0])
    assert cfg["model"]["descriptor"]["sel"] == [46, 92]
    assert cfg["training"]["validation_data"]["numb_btch"] == 3
    assert cfg["training"]["save_ckpt"] == "model.ckpt" and cfg["learning_rate"]["smooth"] is False


@needs_shared
def test_shipped_water_config():
    cfg = config.load(str(REPO / "configs" / "water_se_e2_a.json"))
    assert cfg["training"]["training_data"]["systems"] == [str(WATER / f"data_{i}") for i in range(3)]
    assert cfg["model"]["descriptor"]["neuron"] == [25, 50, 100] and cfg["model"]["descriptor"]["axis_neuron"] == 16


def _raw(data, section, **keys):
    cfg = {"model": {"type_map": ["Cu", "Ag"], "descriptor": {"type": "se_e2_a"}, "fitting_net": {}},
           "training": {"training_data": {"systems": [data["train"]]}, "numb_steps": 1}}
    node = cfg
    for part in section.split("/"):
        node = node.setdefault(part, {})
    node.update(keys)
    return cfg


@pytest.mark.parametrize("section, keys, message", [
    ("model/descriptor", {"rcutt": 5.0}, r"model/descriptor.*undefined key `rcutt`.*Did you mean: rcut"),
    ("model/descriptor", {"rcut": "six"}, r"key `rcut` gets wrong value type"),
    ("model/descriptor", {"precision": "float16"}, r"precision.*Allowed values: default, float64, float32"),
    ("model/descriptor", {"type": "se_e2_x"}, r"invalid choice `se_e2_x`.*Allowed values: se_e2_a, se_a"),
    ("model/descriptor", {"type": "se_e3"}, r"type: 'se_e3' is a DeePMD-kit type.*not support.*se_e2_a"),
    ("model/descriptor", {"sel": "many"}, r"model/descriptor/sel.*'auto:<factor>'"),
    ("loss", {"start_pref_q": 1.0}, r"undefined key `start_pref_q`"),
    ("training/training_data", {"batch_size": "mixed:4"}, r"training/training_data/batch_size.*'auto:N'"),
    ("training/training_data", {"batch_size": [1, 2]}, r"training/training_data/batch_size.*a list of 1 such"),
    ("training/training_data", {"auto_prob": "prob_sys_size;0:5:1"}, r"training/training_data/auto_prob.*<= 1 sys"),
    ("training/training_data", {"systems": ["no/such/dir"]}, r"training/training_data/systems: 'no/such/dir'"),
])
def test_bad_config_names_the_key(emt, section, keys, message):
    with pytest.raises(ValueError, match=message):
        config.normalize(_raw(emt, section, **keys))


def test_yaml_and_relative_paths(emt, tmp_path):
    import yaml

    raw = _raw(emt, "model")
    raw["training"]["training_data"]["systems"] = [os.path.relpath(emt["train"], tmp_path)]
    (tmp_path / "in.yaml").write_text(yaml.safe_dump(raw))
    cfg = config.load(str(tmp_path / "in.yaml"))
    assert cfg["training"]["training_data"]["systems"] == [emt["train"]]
    with pytest.raises(ConfigError, match="does not exist"):
        config.load(str(tmp_path / "missing.json"))


# ----------------------------------------------------------------------------- schedules
def test_lr_schedule_formula():
    lr = LearningRateExp(1e-3, 3.51e-8, numb_steps=2000, decay_steps=200)
    rate = (3.51e-8 / 1e-3) ** (200 / 2000)
    for step in (0, 1, 199, 200, 201, 999, 1999):
        assert lr.value(step) == pytest.approx(1e-3 * rate ** (step // 200), rel=1e-12)
    assert lr.value(2000) == pytest.approx(3.51e-8, rel=1e-9)
    assert lr.value(5000) == pytest.approx(3.51e-8, rel=1e-12)  # never below stop_lr
    smooth = LearningRateExp(1e-3, 3.51e-8, numb_steps=2000, decay_steps=200, smooth=True)
    assert smooth.value(300) == pytest.approx(1e-3 * rate ** 1.5, rel=1e-12)
    # DeePMD-kit: decay_steps >= numb_steps -> 100, or numb_steps // 100 + 1 for short runs
    assert LearningRateExp(1e-3, 1e-8, numb_steps=50, decay_steps=5000).decay_steps == 1
    assert LearningRateExp(1e-3, 1e-8, numb_steps=4000, decay_steps=5000).decay_steps == 100
    assert LearningRateExp(1e-3, 1e-8, numb_steps=100, decay_steps=10, decay_rate=0.5).value(25) == 2.5e-4


def _fake(nf=2, natoms=3, seed=0):
    rng = np.random.default_rng(seed)
    out = {"energy": rng.normal(size=(nf, 1)), "force": rng.normal(size=(nf, natoms, 3)),
           "virial": rng.normal(size=(nf, 9))}
    lab = {k: rng.normal(size=v.shape) for k, v in out.items()}
    return out, lab


def test_loss_prefactors_and_terms():
    loss = EnerLoss(1e-3, start_pref_e=0.02, limit_pref_e=1, start_pref_f=1000, limit_pref_f=1,
                    start_pref_v=0.5, limit_pref_v=2)
    for lr in (1e-3, 3e-4, 1e-8):
        p = loss.prefactors(lr)
        assert p["e"] == pytest.approx(1 + (0.02 - 1) * lr / 1e-3)
        assert p["f"] == pytest.approx(1 + (1000 - 1) * lr / 1e-3)
        assert p["v"] == pytest.approx(2 + (0.5 - 2) * lr / 1e-3)
    out, lab = _fake(natoms=3)
    batch = {**{k: paddle.to_tensor(v) for k, v in lab.items()}, "natoms": 3,
             "find_energy": 1.0, "find_force": 1.0, "find_virial": 1.0}
    value, l2 = loss({k: paddle.to_tensor(v) for k, v in out.items()}, batch, 3e-4)
    l2e = np.mean((out["energy"] - lab["energy"]) ** 2)
    l2f = np.mean((out["force"] - lab["force"]) ** 2)
    l2v = np.mean((out["virial"] - lab["virial"]) ** 2)
    p = loss.prefactors(3e-4)
    # DeePMD-kit's default (legacy) normalisation: energy and virial terms divided by N
    assert float(value) == pytest.approx(p["e"] / 3 * l2e + p["f"] * l2f + p["v"] / 3 * l2v, rel=1e-12)
    rmse = loss.rmse(float(value), l2, 3)
    assert rmse["rmse_e"] == pytest.approx(math.sqrt(l2e) / 3) and rmse["rmse_f"] == pytest.approx(math.sqrt(l2f))
    assert rmse["rmse_v"] == pytest.approx(math.sqrt(l2v) / 3)
    intensive = EnerLoss(1e-3, start_pref_v=0.5, limit_pref_v=2, intensive_ener_virial=True)
    value2, _ = intensive({k: paddle.to_tensor(v) for k, v in out.items()}, batch, 3e-4)
    p2 = intensive.prefactors(3e-4)
    assert float(value2) == pytest.approx(p2["e"] / 9 * l2e + p2["f"] * l2f + p2["v"] / 9 * l2v, rel=1e-12)
    # an absent label drops its term and displays NaN
    value3, l2_3 = loss({k: paddle.to_tensor(v) for k, v in out.items()}, {**batch, "find_virial": 0.0}, 3e-4)
    assert float(value3) == pytest.approx(p["e"] / 3 * l2e + p["f"] * l2f, rel=1e-12)
    assert math.isnan(l2_3["v"]) and math.isnan(loss.rmse(float(value3), l2_3, 3)["rmse_v"])
    assert EnerLoss(1e-3, start_pref_v=0, limit_pref_v=0).keys == ["e", "f"]


# ----------------------------------------------------------------------------- trainer
def test_training_lowers_validation_loss_and_writes_lcurve(emt, tmp_path):
    result = Trainer(tiny_config(emt, numb_steps=60, disp_freq=20, save_freq=30), str(tmp_path)).run()
    assert result == {"step": 60, "checkpoint": str(tmp_path / "model.ckpt-60.safetensors"),
                      "interrupted": False}
    with open(tmp_path / "lcurve.out") as f:
        header = f.readline().split()
    assert header == ["#", "step", "rmse_val", "rmse_trn", "rmse_e_val", "rmse_e_trn", "rmse_f_val", "rmse_f_trn",
                      "rmse_v_val", "rmse_v_trn", "lr"]
    lc = _lcurve(tmp_path)
    assert lc[:, 0].tolist() == [0, 20, 40, 60]
    assert lc[-1, 1] < 0.5 * lc[0, 1]  # total validation loss
    assert lc[-1, 5] < lc[0, 5]  # validation force RMSE
    assert [os.path.basename(b) for b in checkpoint.list_checkpoints(str(tmp_path / "model.ckpt"))] == [
        "model.ckpt-30", "model.ckpt-60"]
    assert (tmp_path / "checkpoint").read_text().strip() == "model.ckpt-60"
    written = json.loads((tmp_path / "out.json").read_text())  # the full input, sel resolved
    assert isinstance(written["model"]["descriptor"]["sel"], list) and written["training"]["numb_steps"] == 60


@pytest.fixture(scope="module")
def uninterrupted(emt, tmp_path_factory):
    """The reference run: 20 steps without a stop (checkpoints at 10 and 20)."""
    out = tmp_path_factory.mktemp("full")
    trainer = Trainer(tiny_config(emt), str(out))
    trainer.run()
    return out, _params(trainer.model), _lcurve(out)


def _assert_same_run(reference, trainer, outdir):
    _, params, lcurve = reference
    for k, v in _params(trainer.model).items():
        np.testing.assert_array_equal(v, params[k], err_msg=k)
    np.testing.assert_array_equal(_lcurve(outdir), lcurve)


def test_restart_continues_bit_for_bit(emt, uninterrupted, tmp_path):
    resumed = Trainer(tiny_config(emt), str(tmp_path), restart=str(uninterrupted[0] / "model.ckpt-10"))
    assert resumed.start_step == 10
    # a restart keeps the lcurve rows before its step; this one writes to a new folder: copy them
    lines = (uninterrupted[0] / "lcurve.out").read_text().splitlines(keepends=True)
    (tmp_path / "lcurve.out").write_text("".join(lines[:4]))  # header x2, steps 0 and 5
    resumed.run()
    _assert_same_run(uninterrupted, resumed, tmp_path)


def test_ctrl_c_saves_and_restart_matches(emt, uninterrupted, tmp_path):
    before = signal.getsignal(signal.SIGINT)  # (SIG_IGN when the tests run as a background job)
    stopped = Trainer(tiny_config(emt), str(tmp_path))
    draw, calls = stopped.train_data.next_batch, []

    def interrupting_next_batch():  # Ctrl-C while step 7 is being computed
        calls.append(1)
        if len(calls) == 8:
            signal.raise_signal(signal.SIGINT)
        return draw()

    stopped.train_data.next_batch = interrupting_next_batch
    result = stopped.run()
    assert result == {"step": 8, "checkpoint": str(tmp_path / "model.ckpt-8.safetensors"), "interrupted": True}
    assert signal.getsignal(signal.SIGINT) is before  # the run's own handler is gone again
    again = Trainer(tiny_config(emt), str(tmp_path), restart=str(tmp_path))
    again.run()
    _assert_same_run(uninterrupted, again, tmp_path)


def test_init_model_takes_weights_only(emt, tmp_path):
    Trainer(tiny_config(emt, numb_steps=10), str(tmp_path / "a")).run()
    tensors, meta = checkpoint.load(str(tmp_path / "a"))
    assert meta["step"] == 10 and any(k.startswith("optim.") for k in tensors)
    assert meta["config"]["model"]["descriptor"]["sel"] == [int(s) for s in meta["config"]["model"]["descriptor"]["sel"]]
    b = Trainer(tiny_config(emt, numb_steps=10), str(tmp_path / "b"), init_model=str(tmp_path / "a"))
    assert b.start_step == 0
    for k, v in _params(b.model).items():
        np.testing.assert_array_equal(v, tensors[f"model.{k}"])
    assert b.opt.state_dict() == {} or all("moment" not in k for k in b.opt.state_dict())


def test_float32_model_trains_and_restarts_bit_for_bit(emt, tmp_path):
    """float32 nets train (with Paddle's merged Adam), and a restart from step 5 ends where the
    uninterrupted run does, bit for bit: the merged optimizer's slots go through checkpoints."""
    def cfg():
        c = tiny_config(emt, numb_steps=10, disp_freq=5, save_freq=5)
        for part in ("descriptor", "fitting_net"):
            c["model"][part]["precision"] = "float32"
        return c

    full = Trainer(cfg(), str(tmp_path / "full"))
    assert full.opt._use_multi_tensor
    full.run()
    lc = _lcurve(tmp_path / "full")
    assert np.isfinite(lc).all() and lc[-1, 1] < lc[0, 1]
    resumed = Trainer(cfg(), str(tmp_path / "resumed"), restart=str(tmp_path / "full" / "model.ckpt-5"))
    assert resumed.start_step == 5
    resumed.run()
    for k, v in _params(resumed.model).items():
        np.testing.assert_array_equal(v, _params(full.model)[k], err_msg=k)


def test_checkpoint_is_plain_json_and_safetensors(emt, tmp_path):
    Trainer(tiny_config(emt, numb_steps=10), str(tmp_path)).run()
    with open(tmp_path / "model.ckpt-10.json") as f:
        meta = json.load(f)
    assert meta["format"] == checkpoint.FORMAT and meta["config"]["training"]["numb_steps"] == 10
    with open(tmp_path / "model.ckpt-10.safetensors", "rb") as f:
        head = f.read(8)
    assert int.from_bytes(head, "little") < 10 ** 7  # safetensors: a length-prefixed JSON header, no pickle
    assert not [p for p in os.listdir(tmp_path) if ".tmp" in p]
    with pytest.raises(checkpoint.CheckpointError, match="not found"):
        checkpoint.load(str(tmp_path / "model.ckpt-99"))
    for name in ("", "model.ckpt", "model.ckpt-10", "model.ckpt-10.json", "model.ckpt-10.safetensors"):
        assert checkpoint.resolve(str(tmp_path / name)) == str(tmp_path / "model.ckpt-10")
