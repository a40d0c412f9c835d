"""The ``dpp`` command line: help, train/test/neighbor-stat/plot end to end, one-line errors."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO
from deepmd_paddle.cli import COMMANDS, main
from deepmd_paddle.data.demo import demo_config, make_demo
from deepmd_paddle.data.system import load_system


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """EMT data, an input file with relative paths, and a model trained for a few steps by `dpp train`."""
    root = tmp_path_factory.mktemp("cli")
    make_demo(str(root / "data"), seed=11, segments=1, valid_segments=1, frames_per_segment=4, every=2)
    raw = demo_config("data/train", "data/valid")
    raw["model"]["descriptor"].update(rcut=4.0, rcut_smth=2.0, neuron=[4, 8], axis_neuron=4)
    raw["model"]["fitting_net"]["neuron"] = [8, 8]
    raw["training"].update(numb_steps=6, disp_freq=3, save_freq=3)
    (root / "input.json").write_text(json.dumps(raw))
    assert main(["train", str(root / "input.json"), "--outdir", str(root / "out")]) == 0
    return root


def test_help_for_every_command(capsys):
    for name in COMMANDS:
        with pytest.raises(SystemExit) as e:
            main([name, "--help"])
        assert e.value.code == 0
        assert f"usage: dpp {name}" in capsys.readouterr().out


def test_python_dash_m(tmp_path):
    r = subprocess.run([sys.executable, "-m", "deepmd_paddle", "--help"], capture_output=True, text=True,
                       cwd=REPO, timeout=120)
    assert r.returncode == 0 and "neighbor-stat" in r.stdout


def test_train_outputs(trained):
    out = trained / "out"
    assert (out / "checkpoint").read_text().strip() == "model.ckpt-6"
    assert np.loadtxt(out / "lcurve.out")[:, 0].tolist() == [0, 3, 6]


def test_test_writes_deepmd_detail_files_and_plot(trained, capsys):
    prefix = str(trained / "test" / "d")
    assert main(["test", "-m", str(trained / "out"), "-s", str(trained / "data" / "valid"), "-n", "5",
                 "-d", prefix]) == 0
    printed = capsys.readouterr().out
    assert "Energy RMSE/Natoms : " in printed and "Force  RMSE        : " in printed and "Virial RMSE/Natoms : " in printed
    s = load_system(str(trained / "data" / "valid"), ["Cu", "Ag"])
    e = np.loadtxt(prefix + ".e.out")
    f = np.loadtxt(prefix + ".f.out")
    v = np.loadtxt(prefix + ".v.out")
    assert e.shape == (5, 2) and f.shape == (5 * 32, 6) and v.shape == (5, 18)
    np.testing.assert_allclose(e[:, 0], s.labels["energy"][:5])
    np.testing.assert_allclose(f[:, :3], s.labels["force"][:5].reshape(-1, 3))
    np.testing.assert_allclose(np.loadtxt(prefix + ".e_peratom.out"), e / 32)
    np.testing.assert_allclose(np.loadtxt(prefix + ".v_peratom.out"), v / 32)
    with open(prefix + ".f.out") as fh:
        assert fh.readline().strip() == (f"# {trained / 'data' / 'valid'}: data_fx data_fy data_fz pred_fx pred_fy "
                                         "pred_fz")
    # the printed force RMSE is the RMSE of the detail file's columns
    rmse_f = np.sqrt(np.mean((f[:, :3] - f[:, 3:]) ** 2))
    assert f"Force  RMSE        : {rmse_f:e} eV/Å" in printed
    assert os.path.getsize(prefix + ".parity.png") > 1000


def test_test_over_a_folder_of_systems(trained, capsys):
    assert main(["test", "-m", str(trained / "out" / "model.ckpt-6.safetensors"), "-s", str(trained / "data"),
                 "-n", "2"]) == 0
    out = capsys.readouterr().out
    assert out.count("# number of test data : 2 ") == 2 and "# number of systems : 2" in out


def test_neighbor_stat(trained, capsys):
    assert main(["neighbor-stat", "-s", str(trained / "data"), "-r", "4.0", "-t", "Cu", "Ag"]) == 0
    out = capsys.readouterr().out
    assert "systems: 2" in out and "min_nbor_dist:" in out and "max_nbor_size: [" in out


def test_plot(trained, tmp_path):
    assert main(["plot", str(trained / "out" / "lcurve.out"), "-o", str(tmp_path / "l.png")]) == 0
    assert os.path.getsize(tmp_path / "l.png") > 1000


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["model"]["descriptor"].update(rcutt=5), "undefined key `rcutt`"),
    (lambda c: c["training"]["training_data"].update(systems=["missing"]), "'missing' does not exist"),
    (lambda c: c["model"].update(type_map=["Ag"]), "['Cu'] are not in the model's type_map"),
])
def test_bad_input_is_one_line_exit_1(trained, tmp_path, capsys, edit, message):
    raw = json.loads((trained / "input.json").read_text())
    for k in ("training_data", "validation_data"):
        raw["training"][k]["systems"] = [str(trained / p) for p in raw["training"][k]["systems"]]
    edit(raw)
    (tmp_path / "bad.json").write_text(json.dumps(raw))
    assert main(["train", str(tmp_path / "bad.json"), "--outdir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("dpp train: error:") and message in err and err.count("\n") == 1


def test_missing_checkpoint(capsys, tmp_path):
    assert main(["test", "-m", str(tmp_path / "nope"), "-s", str(tmp_path)]) == 1
    assert "error" in capsys.readouterr().err


def test_configs_demo_json_is_the_embedded_demo_config():
    with open(REPO / "configs" / "demo.json") as f:
        shipped = json.load(f)
    strip = lambda d: {k: strip(v) for k, v in d.items() if not k.startswith("_")} if isinstance(d, dict) else d  # noqa
    assert strip(shipped) == demo_config()
