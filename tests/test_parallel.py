"""Data-parallel training (deepmd_paddle.train.parallel) on 2 CPU processes started by
``paddle.distributed.launch`` (gloo): ranks stay identical, 20 steps equal one process fed both
ranks' frames as one batch, restart continues the same run, a dying rank ends the run."""
import json
import math
import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest

from deepmd_paddle import config
from deepmd_paddle.data.batch import DataSet
from deepmd_paddle.data.demo import make_demo
from deepmd_paddle.io import checkpoint
from deepmd_paddle.train import parallel
from deepmd_paddle.train.trainer import Trainer

HERE = os.path.dirname(os.path.abspath(__file__))
STEPS = 20


@pytest.fixture(scope="module")
def emt(tmp_path_factory):
    return make_demo(str(tmp_path_factory.mktemp("emt")), seed=7, segments=2, valid_segments=1,
                     frames_per_segment=5, every=2, n_ag=4)


def raw_config(data: dict, **lr) -> dict:
    return {
        "model": {"type_map": ["Cu", "Ag"],
                  "descriptor": {"type": "se_e2_a", "sel": "auto", "rcut": 4.0, "rcut_smth": 2.0, "neuron": [4, 8],
                                 "axis_neuron": 4, "type_one_side": True},
                  "fitting_net": {"neuron": [16, 16]}},
        "learning_rate": {"start_lr": 3e-3, "stop_lr": 1e-4, "decay_steps": 10, "scale_by_worker": "none", **lr},
        "loss": {"start_pref_e": 0.2, "limit_pref_e": 1, "start_pref_f": 100, "limit_pref_f": 1,
                 "start_pref_v": 0.02, "limit_pref_v": 0.1},
        "training": {"training_data": {"systems": [data["train"]], "batch_size": 2},
                     "validation_data": {"systems": [data["valid"]], "batch_size": 3, "numb_btch": 1},
                     "numb_steps": STEPS, "seed": 3, "disp_freq": 5, "save_freq": 10},
    }


def launch(args: list[str], log_dir, timeout=240) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PADDLE_")}
    env.update(DP_INTRA_OP_PARALLELISM_THREADS="1", DEEPMD_PADDLE_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2", "--log_dir", str(log_dir),
           *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def worker_log(log_dir, rank: int) -> str:
    with open(os.path.join(log_dir, f"workerlog.{rank}")) as f:
        return f.read()


class TwoRankSampler:
    """Rank 0's and rank 1's batches of one step as one batch of twice the size."""

    def __init__(self, first: DataSet, second: DataSet):
        self.parts = (first, second)

    def next_batch(self) -> dict:
        a, b = (p.next_batch() for p in self.parts)
        out = {}
        for k, v in a.items():
            if isinstance(v, np.ndarray):
                out[k] = np.concatenate([v, b[k]])
            elif k.startswith("find_"):
                out[k] = min(v, b[k])
            else:
                assert v == b[k], k
                out[k] = v
        return out

    def state_dict(self):
        return self.parts[0].state_dict()


@pytest.fixture(scope="module")
def two_ranks(emt, tmp_path_factory):
    """The checked worker on 2 processes: (input file, output folder, worker.npz)."""
    tmp = tmp_path_factory.mktemp("ddp")
    cfg_path = tmp / "input.json"
    cfg_path.write_text(json.dumps(raw_config(emt)))
    out = tmp / "out"
    # gradients of 200 values and more all-reduced in place, the smaller ones concatenated: both ways
    r = launch([os.path.join(HERE, "parallel_worker.py"), str(cfg_path), str(out), "--inplace-numel", "200"],
               tmp / "log")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return cfg_path, out, np.load(out / "worker.npz"), tmp / "log"


def test_ranks_identical_and_equal_to_one_process_with_double_batch(emt, two_ranks, tmp_path):
    _, _, w, _ = two_ranks
    assert int(w["world"]) == 2
    # every update leaves the two ranks with bitwise identical parameters
    assert len(w["rank_diff"]) == STEPS and np.all(w["rank_diff"] == 0.0)
    # ... while they trained on different frames (two independent draws from 20 frames: few coincide)
    coords = w["coords"]  # rank x step x 3, the first atom of each batch
    assert np.all(coords[0] == coords[1], axis=-1).sum() <= 3

    cfg = config.normalize(raw_config(emt))
    ref = Trainer(cfg, str(tmp_path))  # not launched: a single process
    assert ref.par.size == 1 and ref.lr_scale == 1.0
    seed = cfg["training"]["seed"]
    other = DataSet(ref.train_data.systems, 2, seed=parallel.rank_seed(seed, 1))
    ref.train_data = TwoRankSampler(ref.train_data, other)
    ref.run()
    worst = 0.0
    for k, v in ref.model.state_dict().items():
        d = np.abs(v.numpy() - w[f"param.{k}"]).max()
        worst = max(worst, d)
    assert worst < 1e-8, worst
    # and the run moved them: the comparison is not between two untouched initialisations
    init = Trainer(cfg, str(tmp_path / "init")).model.state_dict()
    moved = max(np.abs(v.numpy() - init[k].numpy()).max() for k, v in ref.model.state_dict().items())
    assert moved > 1e-3


def test_only_rank0_writes_and_logs(two_ranks):
    _, out, _, log_dir = two_ranks
    rows = np.loadtxt(out / "lcurve.out", ndmin=2)
    assert rows[:, 0].tolist() == [0, 5, 10, 15, 20]  # one writer: no duplicated rows
    assert sorted(p for p in os.listdir(out) if p.endswith(".json")) == [
        "model.ckpt-10.json", "model.ckpt-20.json", "out.json"]
    assert "step      20" in worker_log(log_dir, 0) and "INFO" not in worker_log(log_dir, 1)
    assert "averaged over 2 workers in 1 all-reduce" in worker_log(log_dir, 0)
    meta = checkpoint.load(str(out / "model.ckpt-20"))[1]
    assert len(meta["state"]["train_ranks"]) == 2
    assert meta["state"]["train_ranks"][0] == meta["state"]["train"]
    assert meta["state"]["train_ranks"][0] != meta["state"]["train_ranks"][1]


def test_stop_on_one_rank_then_dpp_nproc_restart(two_ranks, tmp_path):
    """Ctrl-C reaching rank 1 alone stops both ranks at the same step (the next multiple of
    STOP_CHECK_STEPS) with a checkpoint; `dpp train --nproc 2 --restart` from it reaches the
    uninterrupted run's step-20 parameters exactly."""
    cfg_path, out, _, _ = two_ranks
    r = launch([os.path.join(HERE, "parallel_worker.py"), str(cfg_path), str(tmp_path / "stopped"), "--sigint-at", "3"],
               tmp_path / "log")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert parallel.STOP_CHECK_STEPS == 10 and "worker done 10 interrupted" in worker_log(tmp_path / "log", 0)
    assert checkpoint.resolve(str(tmp_path / "stopped")).endswith("model.ckpt-10")
    dpp = [sys.executable, "-m", "deepmd_paddle", "train", str(cfg_path), "--outdir", str(tmp_path / "re"),
           "--nproc", "2", "--restart", str(tmp_path / "stopped")]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PADDLE_")}
    env.update(DP_INTRA_OP_PARALLELISM_THREADS="1", DEEPMD_PADDLE_NUM_THREADS="1")
    r = subprocess.run(dpp, env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "finished at step 20" in r.stdout
    a = checkpoint.load(str(out / "model.ckpt-20"))[0]
    b = checkpoint.load(str(tmp_path / "re" / "model.ckpt-20"))[0]
    assert set(a) == set(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert os.path.isfile(tmp_path / "re" / "log" / "workerlog.1")


def test_a_dying_rank_ends_the_run(two_ranks, tmp_path):
    cfg_path = tmp_path / "input.json"
    cfg = json.loads(two_ranks[0].read_text())
    cfg["training"]["numb_steps"] = 100000  # would run for many minutes
    cfg_path.write_text(json.dumps(cfg))
    t0 = time.perf_counter()
    r = launch([os.path.join(HERE, "parallel_worker.py"), str(cfg_path), str(tmp_path / "out"), "--die-at", "5"],
               tmp_path / "log", timeout=120)
    elapsed = time.perf_counter() - t0
    assert r.returncode != 0
    assert elapsed < 60, elapsed  # gloo fails the survivor's all-reduce as soon as the peer's socket closes
    text = r.stdout + r.stderr
    # the launcher names the first failed rank it sees: rank 1 (killed) or rank 0 (aborted by gloo)
    assert "Container failed" in text and re.search(r"rank [01] status failed", text), text[-3000:]
    assert "worker done" not in worker_log(tmp_path / "log", 0)


def test_system_without_an_element(emt, tmp_path):
    """A pure-Cu system next to the Cu/Ag one: a rank drawing it leaves the Ag fitting net without
    a gradient (find_unused_parameters with autograd, a zero in the fused step's all-reduce); the
    ranks still agree at every step and finish."""
    cu = make_demo(str(tmp_path / "cu"), seed=8, segments=1, valid_segments=1, frames_per_segment=5, every=2, n_ag=0)
    raw = raw_config(emt)
    raw["training"]["training_data"]["systems"] = [emt["train"], cu["train"]]
    raw["training"]["validation_data"] = None
    (tmp_path / "input.json").write_text(json.dumps(raw))
    r = launch([os.path.join(HERE, "parallel_worker.py"), str(tmp_path / "input.json"), str(tmp_path / "out")],
               tmp_path / "log")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    log0 = worker_log(tmp_path / "log", 0)
    # autograd training: DataParallel must be told; the fused step counts a missing gradient as 0
    assert "(find_unused_parameters)" in log0 or "(fused training step)" in log0
    w = np.load(tmp_path / "out" / "worker.npz")
    assert len(w["rank_diff"]) == STEPS and np.all(w["rank_diff"] == 0.0)


def test_lr_scale_and_rank_seeds():
    assert parallel.lr_scale("linear", 4) == 4.0
    assert parallel.lr_scale("sqrt", 4) == 2.0
    assert parallel.lr_scale("none", 4) == 1.0
    with pytest.raises(ValueError, match="allowed: linear, sqrt, none"):
        parallel.lr_scale("log", 4)
    assert parallel.rank_seed(3, 0) == 3 and parallel.rank_seed(None, 1) is None
    seeds = {parallel.rank_seed(3, r) for r in range(8)}
    assert len(seeds) == 8 and parallel.rank_seed(3, 5) == parallel.rank_seed(3, 5)


def test_scale_by_worker_is_checked(emt):
    bad = raw_config(emt, scale_by_worker="log")
    with pytest.raises(config.ConfigError, match="scale_by_worker"):
        config.normalize(bad)
    assert config.normalize(raw_config(emt))["learning_rate"]["scale_by_worker"] == "none"
    raw = raw_config(emt)
    del raw["learning_rate"]["scale_by_worker"]
    assert config.normalize(raw)["learning_rate"]["scale_by_worker"] == "linear"  # DeePMD-kit's default


def test_launch_command(tmp_path):
    cmd = parallel.launch_command(3, ["train", "in.json"], str(tmp_path / "log"))
    assert cmd[1:5] == ["-m", "paddle.distributed.launch", "--nproc_per_node", "3"]
    assert os.path.basename(cmd[-3]) == "dpp" and cmd[-2:] == ["train", "in.json"]
    with pytest.raises(ValueError, match="--nproc"):
        parallel.launch_command(0, [], "log")
    assert math.isclose(parallel.lr_scale("sqrt", 2), 2 ** 0.5)
