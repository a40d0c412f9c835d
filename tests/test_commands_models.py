"""``dpp change-bias``, ``dpp show``, ``dpp train --finetune/--init-frz-model/--init-model/-o/--outdir
/--skip-neighbor-stat`` and the dpdata driver, on DeePMD-kit .pb models (tests/fixtures/deepmd_pb)
and the systems of tests/fixtures/deepmd_commands (its bias.npz: DeePMD-kit's energy-bias change)."""
import json

import numpy as np
import pytest

from conftest import REPO, WATER
from deepmd_paddle.cli import main
from deepmd_paddle.io.load import load_model

FIX = REPO / "tests" / "fixtures" / "deepmd_commands"


def _load_fixture_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("deepmd_commands_make", FIX / "make.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PB = REPO / "tests" / "fixtures" / "deepmd_pb"
TWO = str(PB / "two_side.pb")
build_systems = _load_fixture_script().build_systems  # the fixture's systems (plain numpy)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    if not WATER.is_dir():
        pytest.skip("../shared (water data) is absent")
    root = tmp_path_factory.mktemp("models")
    build_systems(str(WATER), str(root / "sys"))
    raw = {"model": {"type_map": ["O", "H"],
                     "descriptor": {"type": "se_e2_a", "sel": [46, 92], "rcut": 6.0, "rcut_smth": 0.5,
                                    "neuron": [4, 8], "axis_neuron": 4},
                     "fitting_net": {"neuron": [8, 8]}},
           "learning_rate": {"start_lr": 1e-3, "stop_lr": 1e-5}, "loss": {},
           "training": {"training_data": {"systems": ["sys/a", "sys/b"], "batch_size": 1}, "numb_steps": 1,
                        "disp_freq": 1, "save_freq": 1, "seed": 1}}
    (root / "in.json").write_text(json.dumps(raw))
    return root


def constant(model):
    """The per-type energy constant of a model: fitting bias + output bias."""
    return model.out_bias.numpy() + model.fitting.bias_atom_e.numpy()


# ----------------------------------------------------------------------------- change-bias
@pytest.mark.parametrize("mode", ["change", "set"])
def test_change_bias_is_deepmd_kits(work, monkeypatch, capsys, mode):
    monkeypatch.chdir(work)
    ref = np.load(FIX / "bias.npz")
    np.testing.assert_allclose(constant(load_model(TWO)), ref[f"old_{mode}"], rtol=1e-14)
    assert main(["change-bias", TWO, "-s", "sys", "-n", "2", "-m", mode, "-o", f"{mode}.dp"]) == 0
    assert f"Saved model to {mode}.dp" in capsys.readouterr().out
    np.testing.assert_allclose(constant(load_model(work / f"{mode}.dp")), ref[f"new_{mode}"], rtol=1e-12)


def test_change_bias_values_output_and_errors(work, monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(work)
    assert main(["change-bias", TWO, "-b", "-93.5", "-187.0", "-o", str(tmp_path / "b.dp")]) == 0
    np.testing.assert_allclose(constant(load_model(tmp_path / "b.dp")), [-93.5, -187.0], rtol=1e-15)
    from deepmd_paddle.cli.bias import default_output

    assert default_output("dir/m.pb") == "dir/m_updated.dp" and default_output("m.dp") == "m_updated.dp"
    # a frozen model of this package (one file, named .pb as DeePMD-kit's default) stays a frozen model
    from deepmd_paddle.io.frozen import freeze

    frozen = str(tmp_path / "frozen_model.pb")
    freeze(load_model(TWO), frozen)
    assert default_output(frozen) == str(tmp_path / "frozen_model_updated.pb")
    assert main(["change-bias", frozen, "-b", "-93.0", "-187.5"]) == 0
    from deepmd_paddle.io.frozen_file import is_frozen_file

    updated = tmp_path / "frozen_model_updated.pb"
    assert is_frozen_file(str(updated))
    np.testing.assert_allclose(constant(load_model(str(updated))), [-93.0, -187.5], rtol=1e-15)
    assert main(["change-bias", TWO, "-b", "1.0"]) == 1
    assert "1 values for the 2 types" in capsys.readouterr().err
    assert main(["change-bias", TWO, "-s", "nowhere"]) == 1
    assert "'nowhere' does not exist" in capsys.readouterr().err
    assert main(["change-bias", str(work / "in.json"), "-b", "1", "2"]) == 1
    assert "change-bias INPUT" in capsys.readouterr().err


# ----------------------------------------------------------------------------- show
def test_show(capsys):
    assert main(["show", TWO, "type-map", "descriptor", "fitting-net", "size", "observed-type"]) == 0
    out = capsys.readouterr().out.splitlines()
    model = load_model(TWO)
    n_desc = sum(int(np.prod(p.shape)) for n, p in model.named_parameters() if "descriptor" in n)
    n_fit = sum(int(np.prod(p.shape)) for n, p in model.named_parameters() if "fitting" in n)
    assert out[0] == "This is a singletask model" and out[1] == "The type_map is ['O', 'H']"
    assert out[2].startswith("The descriptor parameter is {'type': 'se_e2_a', 'sel': [46, 92]")
    assert out[3].startswith("The fitting_net parameter is {'neuron': [32, 32, 32]")
    assert out[4:8] == ["Parameter counts:", f"Parameters in descriptor: {n_desc:,}",
                        f"Parameters in fitting-net: {n_fit:,}", f"Parameters in total: {n_desc + n_fit:,}"]
    assert out[8:] == ["The observed types for this model: ", "Number of observed types: 2 ",
                       "Observed types: ['H', 'O'] "]  # sorted by atomic number, as DeePMD-kit
    # two_side.pb: a 4-layer embedding net 1 -> 8 -> 16 -> 32 per type pair (4 pairs), with resnet_dt
    assert n_desc == 4 * ((8 + 8) + (8 * 16 + 16) + (16 * 32 + 32)) + 4 * (16 + 32)


# ----------------------------------------------------------------------------- train
def test_finetune_changes_the_bias_as_change_bias_does(work, monkeypatch, capsys):
    monkeypatch.chdir(work)
    raw = json.loads((work / "in.json").read_text())
    raw["training"]["numb_steps"] = 0
    raw["model"]["type_map"] = ["H"]  # a subset of the pretrained model's
    raw["model"]["descriptor"]["sel"] = "auto"
    (work / "ft.json").write_text(json.dumps(raw))
    assert main(["train", "ft.json", "--finetune", TWO, "--outdir", "ft", "-o", "ft_input.json"]) == 0
    assert "descriptor and fitting_net section(s) are not used" in capsys.readouterr().err  # (the log)
    assert json.loads((work / "ft_input.json").read_text())["model"]["type_map"] == ["O", "H"]
    assert not (work / "ft" / "out.json").exists()
    tuned = load_model(work / "ft")
    assert main(["change-bias", TWO, "-s", "sys", "-n", "10", "-o", "cb10.dp"]) == 0
    np.testing.assert_allclose(constant(tuned), constant(load_model(work / "cb10.dp")), rtol=1e-12)
    assert np.abs(constant(tuned) - constant(load_model(TWO))).max() > 1e-5  # it moved
    pre, post = load_model(TWO).state_dict(), tuned.state_dict()
    for k in pre:
        if k != "out_bias":
            np.testing.assert_array_equal(pre[k].numpy(), post[k].numpy(), err_msg=k)


@pytest.mark.parametrize("flag", ["--init-frz-model", "--init-model", "-f", "-i"])
def test_init_from_a_pb_model(work, monkeypatch, flag):
    monkeypatch.chdir(work)
    raw = json.loads((work / "in.json").read_text())
    raw["training"]["numb_steps"] = 0
    (work / "init.json").write_text(json.dumps(raw))
    out = f"init{flag.strip('-')}"
    assert main(["train", "init.json", flag, TWO, "--outdir", out, "--overwrite"]) == 0
    pre, post = load_model(TWO).state_dict(), load_model(work / out).state_dict()
    assert sorted(pre) == sorted(post)
    for k in pre:
        np.testing.assert_array_equal(pre[k].numpy(), post[k].numpy(), err_msg=k)
    assert json.loads((work / out / "out.json").read_text())["model"]["descriptor"]["neuron"] == [8, 16, 32]


def test_train_output_options_and_errors(work, monkeypatch, capsys):
    monkeypatch.chdir(work)
    assert main(["train", "in.json", "-o", "olddir"]) == 0  # -o DIR: the folder, as before
    assert "read as the output folder" in capsys.readouterr().err
    assert (work / "olddir" / "lcurve.out").is_file() and (work / "olddir" / "out.json").is_file()
    raw = json.loads((work / "in.json").read_text())
    raw["model"]["descriptor"]["sel"] = "auto"
    (work / "auto.json").write_text(json.dumps(raw))
    assert main(["train", "auto.json", "--skip-neighbor-stat", "--outdir", "x"]) == 1
    assert "--skip-neighbor-stat: model.descriptor.sel is 'auto'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:  # one source only: argparse's usage error
        main(["train", "in.json", "--finetune", TWO, "--init-model", TWO])
    assert e.value.code == 2 and "not allowed with argument" in capsys.readouterr().err
    raw["model"]["type_map"] = ["O", "H", "C"]
    (work / "c.json").write_text(json.dumps(raw))
    assert main(["train", "c.json", "--finetune", TWO, "--outdir", "c"]) == 1
    assert "the pretrained model's type_map ['O', 'H'] lacks" in capsys.readouterr().err
    assert main(["train", "c.json", "--init-frz-model", TWO, "--outdir", "c"]) == 1
    assert "differs from the input's" in capsys.readouterr().err
    assert main(["train", "in.json", "--outdir", "y", "-o", "z"]) == 1
    assert "with --outdir, -o names the normalised input file" in capsys.readouterr().err


# ----------------------------------------------------------------------------- dpdata
def test_dpdata_driver_gives_deeppots_numbers(work):
    import dpdata

    from deepmd_paddle.infer import DeepPot
    from deepmd_paddle.infer import dpdata_driver

    s = dpdata.LabeledSystem(str(work / "sys" / "b"), fmt="deepmd/npy")
    s.data["atom_names"] = s.data["atom_names"][::-1]  # the data's type order need not be the model's
    s.data["atom_types"] = 1 - s.data["atom_types"]
    dp = DeepPot(TWO)
    for name in dpdata_driver.NAMES:
        pred = s.predict(TWO, driver=name)
        e, f, v = dp.eval(s["coords"].reshape(len(s), -1), s["cells"].reshape(len(s), 9),
                          [s["atom_names"][t] for t in s["atom_types"]])
        np.testing.assert_allclose(pred["energies"], e.ravel(), rtol=1e-12)
        np.testing.assert_allclose(pred["forces"], f, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(pred["virials"].reshape(len(s), 9), v, rtol=1e-12, atol=1e-12)
    assert "dp" in dpdata_driver.NAMES  # DeePMD-kit is not installed in this venv
    text = (REPO / "setup.py").read_text()
    assert '"dpdata.plugins": ["deepmd_paddle=deepmd_paddle.infer.dpdata_driver"]' in text


def test_dpdata_minimize_with_the_driver(work):
    import dpdata
    from dpdata.driver import Driver

    from deepmd_paddle.infer import dpdata_driver  # noqa: F401  (registers the driver, as the entry point does)

    s = dpdata.System(str(work / "sys" / "a"), fmt="deepmd/npy")[:1]
    driver = Driver.get_driver("dpp")(TWO)
    relaxed = s.minimize(driver=driver, minimizer="ase", max_steps=2)
    start = s.predict(driver=driver)
    assert relaxed["energies"][0] < start["energies"][0] - 0.1  # FIRE/BFGS steps go downhill
    np.testing.assert_allclose(driver.label(relaxed.data)["energies"], relaxed["energies"], rtol=1e-12)
