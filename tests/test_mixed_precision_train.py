"""Mixed precision in training and after it: the trainer takes the fused C++ step (it rounds), the setting
survives checkpoints, .dp and frozen files (the same rounded nets evaluate), compress refuses it,
and DeePMD-kit's own example (examples/water/se_e2_a_mixed_prec: compute float16, output float64)
trains unchanged but for numb_steps."""
import copy
import json
import os

import numpy as np
import paddle
import pytest

from conftest import REPO, WATER, needs_shared
from deepmd_paddle import config
from deepmd_paddle.data.demo import make_demo
from deepmd_paddle.io import checkpoint
from deepmd_paddle.train.trainer import Trainer

MIXED = {"output_prec": "float64", "compute_prec": "bfloat16"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("mixed")
    data = make_demo(str(root / "emt"), seed=7, segments=2, valid_segments=1, frames_per_segment=5, every=2, n_ag=4)
    cfg = config.normalize({
        "model": {"type_map": ["Cu", "Ag"],
                  "descriptor": {"type": "se_e2_a", "sel": "auto", "rcut": 4.0, "rcut_smth": 2.0, "neuron": [4, 8],
                                 "axis_neuron": 4, "type_one_side": True, "precision": "float32"},
                  "fitting_net": {"neuron": [16, 16]}},
        "learning_rate": {"start_lr": 3e-3, "stop_lr": 1e-4, "decay_steps": 10},
        "training": {"training_data": {"systems": [data["train"]], "batch_size": 2},
                     "validation_data": {"systems": [data["valid"]], "batch_size": 3, "numb_btch": 1},
                     "numb_steps": 4, "seed": 3, "disp_freq": 2, "save_freq": 4, "mixed_precision": MIXED},
    })
    trainer = Trainer(cfg, str(root / "run"))
    # the fused C++ training step rounds as the layers do (rounding.FUSED_KERNELS_ROUND): it is taken
    assert trainer.fused == trainer.model.kernels.has("embed_train")
    assert trainer.dtype == "float64"  # output_prec wins over the descriptor's float32, as in DeePMD-kit
    trainer.run()
    frames = np.load(os.path.join(data["valid"], "set.000", "coord.npy"))[:2]
    box = np.load(os.path.join(data["valid"], "set.000", "box.npy"))[:2]
    atype = np.loadtxt(os.path.join(data["valid"], "type.raw"), dtype=np.int32)
    return root, trainer.model, (frames, box, atype)


def _energy_force(model, inputs):
    coord, box, atype = inputs
    n = len(atype)
    out = model(paddle.to_tensor(coord.reshape(-1, n, 3)), paddle.to_tensor(np.tile(atype, (len(coord), 1))),
                paddle.to_tensor(box))
    return out["energy"].numpy(), out["force"].numpy()


def test_lcurve_finite_and_checkpoint_keeps_mixed_precision(trained):
    root, model, inputs = trained
    lc = np.loadtxt(root / "run" / "lcurve.out", ndmin=2)
    assert lc.shape[0] == 3 and np.isfinite(lc).all()
    with open(root / "run" / "out.json") as f:
        assert json.load(f)["training"]["mixed_precision"] == MIXED  # the input as given, DeePMD-kit's layout
    back = checkpoint.load_model(str(root / "run" / "model.ckpt-4"))
    assert back.mixed_precision == MIXED and back.descriptor.precision == "float64"
    e0, f0 = _energy_force(model, inputs)
    e1, f1 = _energy_force(back, inputs)
    np.testing.assert_array_equal(e0, e1)
    np.testing.assert_array_equal(f0, f1)


def test_dp_file_keeps_mixed_precision(trained, tmp_path):
    from deepmd_paddle.io.dp_format import load_dp, read_dict, save_dp

    root, model, inputs = trained
    save_dp(model, str(tmp_path / "m.dp"))
    data, _ = read_dict(str(tmp_path / "m.dp"))
    assert data["mixed_precision"] == MIXED and "mixed_precision" not in data["model_def_script"]
    back = load_dp(str(tmp_path / "m.dp"))
    assert back.mixed_precision == MIXED
    for a, b in zip(_energy_force(model, inputs), _energy_force(back, inputs)):
        np.testing.assert_array_equal(a, b)
    # the same weights without the rounding: other numbers (the record matters)
    plain = load_dp(str(tmp_path / "m.dp"))
    from deepmd_paddle.model import mixed_precision as mp

    mp.enable(plain, None)
    e_plain = _energy_force(plain, inputs)[0]
    assert np.abs(e_plain - _energy_force(model, inputs)[0]).max() > 1e-6


def test_frozen_model_evaluates_the_rounded_nets(trained, tmp_path):
    from deepmd_paddle.infer.deeppot import DeepPot
    from deepmd_paddle.io.frozen import freeze

    root, model, (coord, box, atype) = trained
    frozen = str(tmp_path / "frozen_model.pb")
    freeze(str(root / "run" / "model.ckpt-4"), frozen)
    e, f, v = DeepPot(frozen).eval(coord, box, atype)
    e0, f0 = _energy_force(model, (coord, box, atype))
    np.testing.assert_allclose(e.reshape(-1), e0.reshape(-1), rtol=1e-12)
    np.testing.assert_allclose(f.reshape(f0.shape), f0, rtol=1e-9, atol=1e-10)


def test_compress_refuses_mixed_precision(trained):
    from deepmd_paddle.model.tabulate import compress_model

    _, model, _ = trained
    with pytest.raises(ValueError, match=r"compress: the model was trained with training/mixed_precision .*bfloat16"):
        compress_model(copy.deepcopy(model), min_nbor_dist=1.0)


@needs_shared
def test_deepmd_kit_example_trains(tmp_path):
    """examples/water/se_e2_a_mixed_prec/input.json (compute float16, output float64, a setting
    DeePMD-kit 3.2's TensorFlow backend refuses) on the shared water data, 20 steps (numb_steps and
    disp_freq changed, nothing else)."""
    with open(REPO / "tests" / "fixtures" / "deepmd_examples" / "water_se_e2_a_mixed_prec.json") as f:
        raw = json.load(f)
    assert raw["training"]["mixed_precision"] == {"compute_prec": "float16", "output_prec": "float64"}
    tr = raw["training"]
    tr["training_data"]["systems"] = [str(WATER / os.path.basename(s.rstrip("/"))) for s in tr["training_data"]["systems"]]
    tr["validation_data"]["systems"] = [str(WATER / "data_3")]
    tr["numb_steps"] = tr["disp_freq"] = 20  # (disp_freq: a line at the end too)
    Trainer(config.normalize(raw), str(tmp_path)).run()
    lc = np.loadtxt(tmp_path / "lcurve.out", ndmin=2)
    assert [int(s) for s in lc[:, 0]] == [0, 20] and np.isfinite(lc).all()
    assert lc[-1, 1] < lc[0, 1]  # the loss came down
