"""``trainable`` of the descriptor, the fitting net (one flag, or one per layer) and the type
embedding: untrainable weights stay bit for bit what they were, in both training paths (the fused
C++ step and autograd through the Paddle layers), and the optimizer does not hold them."""
import numpy as np
import pytest

from deepmd_paddle import config
from deepmd_paddle.data.demo import make_demo
from deepmd_paddle.kernels.build import load_library
from deepmd_paddle.model import EnergyModel
from deepmd_paddle.train.trainer import FUSED_ENV, Trainer


@pytest.fixture(scope="module")
def emt(tmp_path_factory):
    return make_demo(str(tmp_path_factory.mktemp("emt")), seed=7, segments=2, valid_segments=1,
                     frames_per_segment=5, every=2, n_ag=4)


def _model(descriptor=None, fitting=None, model=None) -> dict:
    return {"type_map": ["Cu", "Ag"],
            "descriptor": {"type": "se_e2_a", "sel": [24, 24], "rcut": 4.0, "rcut_smth": 2.0, "neuron": [4, 8],
                           "axis_neuron": 4, "type_one_side": True, "resnet_dt": True, **(descriptor or {})},
            "fitting_net": {"neuron": [16, 16], **(fitting or {})}, **(model or {})}


def _config(data, descriptor=None, fitting=None, model=None, steps=6):
    cfg = {
        "model": _model(descriptor, fitting, model),
        "learning_rate": {"start_lr": 3e-3, "stop_lr": 1e-4, "decay_steps": 10},
        "loss": {"start_pref_e": 0.2, "limit_pref_e": 1, "start_pref_f": 100, "limit_pref_f": 1,
                 "start_pref_v": 0.02, "limit_pref_v": 0.1},
        "training": {"training_data": {"systems": [data["train"]], "batch_size": 2},
                     "numb_steps": steps, "seed": 3, "disp_freq": 100, "save_freq": 100, "disp_training": False},
    }
    return config.normalize(cfg)


CASES = {  # case -> (config keys, does the parameter name train?)
    "descriptor": (dict(descriptor={"trainable": False}), lambda n: not n.startswith("descriptor.")),
    "fitting": (dict(fitting={"trainable": False}), lambda n: not n.startswith("fitting.")),
    # hidden layer 0 and the output layer fixed, hidden layer 1 trained
    "fitting_layers": (dict(fitting={"trainable": [False, True, False]}),
                       lambda n: not (n.startswith("fitting.") and ".layers.1." not in n)),
    "type_embedding": (dict(model={"type_embedding": {"neuron": [4], "trainable": False, "seed": 2}}),
                       lambda n: "type_embedding" not in n),
}


@pytest.mark.parametrize("fused", ["1", "0"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_untrainable_weights_do_not_move(emt, tmp_path, monkeypatch, case, fused):
    if fused == "1" and load_library() is None:
        pytest.skip("the C++ operators are not available")
    monkeypatch.setenv(FUSED_ENV, fused)
    keys, trains = CASES[case]
    trainer = Trainer(_config(emt, **keys), str(tmp_path))
    if case != "type_embedding":  # (the type-embedding descriptor trains by autograd)
        assert trainer.fused == (fused == "1")
    before = {n: p.numpy().copy() for n, p in trainer.model.named_parameters()}
    fixed = {n for n in before if not trains(n)}
    assert fixed and len(fixed) < len(before), case
    held = {id(p) for p in trainer.opt._parameter_list}
    for n, p in trainer.model.named_parameters():
        assert (id(p) in held) == (n not in fixed), n  # the optimizer holds the trainable ones only
    trainer.run()
    for n, p in trainer.model.named_parameters():
        if n in fixed:
            assert np.array_equal(p.numpy(), before[n]), f"{n} moved"
        else:
            assert not np.array_equal(p.numpy(), before[n]), f"{n} did not move"


def test_trainable_flags_reach_the_layers_and_serialization():
    sec = config.normalize_model(_model(descriptor={"trainable": False}, fitting={"trainable": [True, False, True]}))
    m = EnergyModel.from_config(sec)
    assert all(p.stop_gradient for p in m.descriptor.parameters())
    for net in m.fitting.nets:
        assert [all(p.stop_gradient for p in layer.parameters()) for layer in net.layers] == [False, True, False]
    arrays = {}
    d = m.descriptor.serialize(arrays)
    f = m.fitting.serialize(arrays, m.type_map)
    assert d["trainable"] is False and f["trainable"] == [True, False, True]
    assert f["nets"]["networks"][0]["layers"][1]["trainable"] is False
    back = EnergyModel.deserialize(m.serialize()[0], m.serialize()[1].__getitem__)
    assert back.descriptor.trainable is False and back.fitting.trainable == [True, False, True]
    assert all(p.stop_gradient for p in back.descriptor.parameters())


@pytest.mark.parametrize("value", [[True, False], [True, "no", True], "yes"])
def test_bad_fitting_trainable_names_the_key(value):
    sec = config.normalize_model(_model())
    sec["fitting_net"]["trainable"] = value
    with pytest.raises((ValueError, config.ConfigError), match="fitting_net.trainable"):
        EnergyModel.from_config(sec)


def test_nothing_to_train_is_refused(emt, tmp_path):
    cfg = _config(emt, descriptor={"trainable": False}, fitting={"trainable": False})
    with pytest.raises(ValueError, match="nothing to train"):
        Trainer(cfg, str(tmp_path))
