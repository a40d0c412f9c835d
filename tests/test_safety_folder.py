"""The output folder under careless use: another run's files, two runs at once, a killed run's
lock, retention, the printed checkpoint, lcurve.out on restart, outputs of other commands."""
import json
import logging
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, make_small_model, random_system
from deepmd_paddle import config
from deepmd_paddle.cli import main
from deepmd_paddle.data.demo import make_demo
from deepmd_paddle.io import checkpoint
from deepmd_paddle.train import run_folder
from deepmd_paddle.train.run_folder import FolderLock, RunFolderError
from deepmd_paddle.train.trainer import Trainer


@pytest.fixture(scope="module")
def emt(tmp_path_factory):
    return make_demo(str(tmp_path_factory.mktemp("emt")), seed=5, segments=1, valid_segments=1,
                     frames_per_segment=4, every=2, n_ag=4)


def tiny(data, **training):
    cfg = {
        "model": {"type_map": ["Cu", "Ag"],
                  "descriptor": {"type": "se_e2_a", "sel": [16, 8], "rcut": 3.5, "rcut_smth": 2.0, "neuron": [4, 8],
                                 "axis_neuron": 4, "type_one_side": True},
                  "fitting_net": {"neuron": [8]}},
        "learning_rate": {"start_lr": 1e-3, "stop_lr": 1e-4, "decay_steps": 5},
        "training": {"training_data": {"systems": [data["train"]], "batch_size": 1}, "numb_steps": 4, "seed": 1,
                     "disp_freq": 1, "save_freq": 1, "max_ckpt_keep": 2},
    }
    cfg["training"].update(training)
    return config.normalize(cfg)


def _snapshot(folder):
    return {p: (folder / p).read_bytes() for p in sorted(os.listdir(folder))}


def _steps(folder, prefix="model.ckpt"):
    return [checkpoint.step_of(b) for b in checkpoint.list_checkpoints(str(folder / prefix))]


def test_new_run_refuses_folder_of_another_run(emt, tmp_path):
    Trainer(tiny(emt, numb_steps=6), str(tmp_path)).run()
    before = _snapshot(tmp_path)
    with pytest.raises(RunFolderError, match=r"holds the files of another training run \(model.ckpt-5, "
                                             r"model.ckpt-6, model.ckpt.index, model.ckpt.meta and 2 more\)"
                                             r".*--restart.*--overwrite"):
        Trainer(tiny(emt, numb_steps=3), str(tmp_path))
    assert _snapshot(tmp_path) == before  # nothing touched, the lock released
    # --overwrite: the old run's files go, the new run's checkpoint is the one printed, and it exists
    result = Trainer(tiny(emt, numb_steps=3), str(tmp_path), overwrite=True).run()
    assert os.path.isfile(result["checkpoint"]) and result["checkpoint"].endswith("model.ckpt-3.safetensors")
    assert _steps(tmp_path) == [2, 3] and (tmp_path / "checkpoint").read_text().strip() == "model.ckpt-3"
    assert np.loadtxt(tmp_path / "lcurve.out", ndmin=2)[:, 0].tolist() == [0, 1, 2, 3]
    assert not [p for p in os.listdir(tmp_path) if "tmp" in p or p == run_folder.LOCK_NAME]


def test_checkpoint_under_deepmd_kit_names_alone_is_not_overwritten(emt, tmp_path):
    """Another run's newest checkpoint under DeePMD-kit's names (model.ckpt.index/.meta/.data-*,
    what DP-GEN forwards) without its numbered files: a new run refuses the folder; --overwrite
    replaces them; --restart of that run continues it."""
    Trainer(tiny(emt, numb_steps=2), str(tmp_path)).run()
    for base in checkpoint.list_checkpoints(str(tmp_path / "model.ckpt")):
        os.remove(base + ".safetensors")
        os.remove(base + ".json")
    os.remove(tmp_path / "lcurve.out")
    before = _snapshot(tmp_path)
    with pytest.raises(RunFolderError, match=r"model.ckpt.index, model.ckpt.meta, model.ckpt.data-00000-of-00001"):
        Trainer(tiny(emt, numb_steps=3), str(tmp_path))
    assert _snapshot(tmp_path) == before
    Trainer(tiny(emt, numb_steps=4), str(tmp_path), restart=str(tmp_path / "model.ckpt")).run()  # its own run
    assert json.loads((tmp_path / "model.ckpt.index").read_text())["step"] == 4
    Trainer(tiny(emt, numb_steps=1), str(tmp_path), overwrite=True).run()
    assert json.loads((tmp_path / "model.ckpt.index").read_text())["step"] == 1


def test_cli_train_into_occupied_folder_is_one_line(emt, tmp_path, capsys):
    out = tmp_path / "out"
    (tmp_path / "in.json").write_text(json.dumps(tiny(emt, numb_steps=2)))
    assert main(["train", str(tmp_path / "in.json"), "--outdir", str(out)]) == 0
    log = capsys.readouterr().err
    assert log.count("CPU threads") == 1 and " INFO saved checkpoint" in log  # our format, once
    assert main(["train", str(tmp_path / "in.json"), "--outdir", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("dpp train: error: ") and "--overwrite" in err and err.count("\n") == 1
    (tmp_path / "afile").write_text("x")
    assert main(["train", str(tmp_path / "in.json"), "--outdir", str(tmp_path / "afile")]) == 1
    assert "afile is a file; training writes into a folder" in capsys.readouterr().err


def test_restart_continues_own_run_but_not_into_another(emt, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    Trainer(tiny(emt, numb_steps=2), str(a)).run()
    Trainer(tiny(emt, numb_steps=2), str(b)).run()
    again = Trainer(tiny(emt, numb_steps=4), str(a), restart=str(a))  # the same run: allowed
    assert again.run_id == checkpoint.load(str(a))[1]["run"]
    again.release()
    with pytest.raises(RunFolderError, match="holds the files of another training run"):
        Trainer(tiny(emt, numb_steps=4), str(b), restart=str(a))
    Trainer(tiny(emt, numb_steps=4), str(b), restart=str(a), overwrite=True).run()
    assert _steps(b) == [3, 4] and _steps(a) == [1, 2]  # a's checkpoints untouched


def test_retention_deletes_only_the_saving_runs_checkpoints(tmp_path):
    model, prefix = make_small_model(), str(tmp_path / "model.ckpt")
    for step in (10, 20):
        checkpoint.save(prefix, step, model, None, {"model": model.get_config()}, {}, keep=2, run="old")
    for step in (1, 2, 3):
        checkpoint.save(prefix, step, model, None, {"model": model.get_config()}, {}, keep=2, run="new")
    assert _steps(tmp_path) == [2, 3, 10, 20]
    assert [checkpoint.run_of(b) for b in checkpoint.list_checkpoints(prefix)] == ["new", "new", "old", "old"]
    checkpoint.save(prefix, 0, model, None, {"model": model.get_config()}, {})  # no run id (convert): no deletion
    assert _steps(tmp_path) == [0, 2, 3, 10, 20]


def test_two_runs_one_folder_and_stale_lock(emt, tmp_path, caplog):
    held = FolderLock(str(tmp_path), "first")
    with pytest.raises(RunFolderError, match=rf"in use by another training run \(pid {os.getpid()} on "):
        Trainer(tiny(emt), str(tmp_path))
    with pytest.raises(RunFolderError, match="in use by another training run"):
        FolderLock(str(tmp_path), "second")
    held.release()
    assert not (tmp_path / run_folder.LOCK_NAME).exists()
    # a run killed with SIGKILL leaves its lock file; the kernel dropped its lock: taken over, said so
    code = ("import os, signal, sys; from deepmd_paddle.train.run_folder import FolderLock; "
            f"FolderLock({str(tmp_path)!r}, 'killed'); os.kill(os.getpid(), signal.SIGKILL)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert proc.returncode == -signal.SIGKILL and "killed" in (tmp_path / run_folder.LOCK_NAME).read_text()
    with caplog.at_level(logging.WARNING, logger="deepmd_paddle.train.run_folder"):
        FolderLock(str(tmp_path), "third").release()
    assert "a lock left by a run that has ended" in caplog.text and "no longer running" in caplog.text


def test_checkpoint_folder_created_and_printed_checkpoint_exists(emt, tmp_path):
    result = Trainer(tiny(emt, numb_steps=2, save_ckpt="ckpt/sub/model.ckpt"), str(tmp_path)).run()
    assert os.path.isfile(result["checkpoint"]) and (tmp_path / "ckpt" / "sub" / "checkpoint").is_file()
    # a restart at the last step saves nothing new: it still reports a checkpoint that exists
    again = Trainer(tiny(emt, numb_steps=2, save_ckpt="ckpt/sub/model.ckpt"), str(tmp_path),
                    restart=str(tmp_path / "ckpt" / "sub")).run()
    assert again["step"] == 2 and os.path.isfile(again["checkpoint"])


def test_restart_keeps_a_stray_lcurve_line(emt, tmp_path, caplog):
    Trainer(tiny(emt, numb_steps=4), str(tmp_path)).run()
    lines = (tmp_path / "lcurve.out").read_text().splitlines(keepends=True)
    lines.insert(3, "a note the user typed\n")
    (tmp_path / "lcurve.out").write_text("".join(lines))
    with caplog.at_level(logging.WARNING):
        Trainer(tiny(emt, numb_steps=4), str(tmp_path), restart=str(tmp_path / "model.ckpt-3")).run()
    text = (tmp_path / "lcurve.out").read_text()
    assert "# a note the user typed" in text and "line 4 is not a row of the learning curve" in caplog.text
    assert np.loadtxt(tmp_path / "lcurve.out", ndmin=2)[:, 0].tolist() == [0, 1, 2, 3, 4]


def _npy_system(path, natoms=6, nframes=3, seed=0):
    coord, atype, cell = random_system(natoms, nframes, seed=seed)
    os.makedirs(path / "set.000", exist_ok=True)
    np.savetxt(path / "type.raw", atype[0], fmt="%d")
    np.save(path / "set.000" / "coord.npy", coord.reshape(nframes, -1))
    np.save(path / "set.000" / "box.npy", cell)
    np.save(path / "set.000" / "energy.npy", np.zeros(nframes))
    return path


def test_model_devi_and_test_outputs_survive_bad_inputs(tmp_path, capsys):
    model = make_small_model()
    for name in ("m1", "m2"):
        checkpoint.save(str(tmp_path / name / "model.ckpt"), 0, model, None, {"model": model.get_config()}, {})
    good = _npy_system(tmp_path / "both" / "a_good")
    out = tmp_path / "model_devi.out"
    out.write_text("earlier results\n")
    models = ["-m", str(tmp_path / "m1"), str(tmp_path / "m2")]
    assert main(["model-devi", *models, "-s", str(tmp_path / "a_good_typo"), "-o", str(out)]) == 1
    assert "does not exist" in capsys.readouterr().err and out.read_text() == "earlier results\n"
    assert main(["model-devi", *models, "-s", str(good), "-o", str(out)]) == 0
    assert np.loadtxt(out).shape == (3, 8) and not [p for p in os.listdir(tmp_path) if ".tmp" in p]
    # dpp test -d: a system that fails to load leaves the earlier detail files as they were
    detail = tmp_path / "detail"
    (tmp_path / "detail.e.out").write_text("earlier\n")
    bad = _npy_system(tmp_path / "both" / "b_bad")
    np.save(bad / "set.000" / "energy.npy", np.zeros(3, bool))
    assert main(["test", "-m", str(tmp_path / "m1"), "-s", str(tmp_path / "both"), "-d", str(detail)]) == 1
    assert "energy.npy: dtype bool" in capsys.readouterr().err
    assert (tmp_path / "detail.e.out").read_text() == "earlier\n"


def test_lock_on_a_file_system_without_locks_checks_the_pid(tmp_path, monkeypatch, caplog):
    import errno
    import fcntl

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")
    monkeypatch.setattr(fcntl, "flock", no_locks)
    lock = FolderLock(str(tmp_path), "first")  # nobody named in the file: taken
    assert "no file locks" in caplog.text
    with pytest.raises(RunFolderError, match=rf"pid {os.getpid()} on "):  # our pid is alive
        FolderLock(str(tmp_path), "second")
    lock.release()


def test_overwrite_keeps_the_checkpoint_the_run_starts_from(emt, tmp_path):
    Trainer(tiny(emt, numb_steps=2), str(tmp_path)).run()
    source = str(tmp_path / "model.ckpt-2")
    b = Trainer(tiny(emt, numb_steps=1), str(tmp_path), init_model=source, overwrite=True)
    assert os.path.isfile(source + ".safetensors") and not os.path.exists(tmp_path / "model.ckpt-1.json")
    b.run()
    assert (tmp_path / "checkpoint").read_text().strip() == "model.ckpt-1"
