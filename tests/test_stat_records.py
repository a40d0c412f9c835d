"""training/stat_file (statistics stored in HDF5 and read back, DeePMD-kit's layout), and what a
run records besides checkpoints: TensorBoard, profiling, time_training (train/records.py).
DeePMD-kit's stat file: tests/fixtures/deepmd_trainkeys/make.py --stat."""
import json
import pathlib
import shutil

import numpy as np
import pytest

from deepmd_paddle import config
from deepmd_paddle.config import ConfigError
from test_trainkeys import DATA, FIX, _input


# ----------------------------------------------------------------------------- stat_file
def _stat_input(tmp_path, stat_file=None, type_map=("O", "H"), rcut=3.0) -> dict:
    """make.py's --stat input: sys_b (10 frames, one set), batch 1, data_stat_nbatch 10."""
    raw = _input([DATA[1]], 1, numb_steps=0)
    raw["model"]["type_map"] = list(type_map)
    raw["model"]["descriptor"]["rcut"] = rcut
    raw["model"]["data_stat_nbatch"] = 10
    if stat_file:
        raw["training"]["stat_file"] = str(stat_file)
    return config.normalize(raw)


def _stats_of(trainer):
    return (trainer.model.descriptor.davg.numpy(), trainer.model.descriptor.dstd.numpy(),
            trainer.model.fitting.bias_atom_e.numpy())


def test_statistics_equal_deepmd_kits_stat_file(tmp_path):
    """The sums (per type: n, sum R, sum R^2; 3n, sum xyz/r^2 terms, their squares) and the energy
    bias computed here from sys_b equal those DeePMD-kit stored in its stat file (tests/fixtures/
    deepmd_trainkeys/stat.h5, same frames), found under the same descriptor key."""
    import h5py

    from deepmd_paddle.train import stat_file
    from deepmd_paddle.train.trainer import Trainer

    key = stat_file.descriptor_key(2, 3.0, 0.5, [8, 16])
    with h5py.File(FIX / "stat.h5", "r") as f:
        assert sorted(f["O H"]) == sorted([key, "bias_atom_energy", "std_atom_energy", "observed_type"])
        ref = {k: f["O H"][key][k][()] for k in ("r_0", "r_1", "a_0", "a_1")}
        ref_bias = f["O H"]["bias_atom_energy"][()].ravel()
    ours = tmp_path / "ours.h5"
    t = Trainer(_stat_input(tmp_path, ours), str(tmp_path / "run"))
    t.release()
    with h5py.File(ours, "r") as f:
        assert sorted(f["O H"]) == sorted([key, "bias_atom_energy", "std_atom_energy", "observed_type"])
        assert f["O H"]["observed_type"][()].tolist() == [b"H", b"O"]
        for k, v in ref.items():
            np.testing.assert_allclose(f["O H"][key][k][()], v, rtol=1e-12, err_msg=k)
        np.testing.assert_allclose(f["O H"]["bias_atom_energy"][()].ravel(), ref_bias, rtol=1e-10)
    np.testing.assert_allclose(_stats_of(t)[2], ref_bias, rtol=1e-10)


def test_stat_file_is_read_back_without_recomputing(tmp_path, monkeypatch):
    """A second run (and a run on DeePMD-kit's own file) takes the statistics from the file: the
    computing functions are not called, and davg, dstd and bias are bit-for-bit the first run's."""
    from deepmd_paddle.train import trainer as trainer_mod
    from deepmd_paddle.train.trainer import Trainer

    path = tmp_path / "stat.h5"
    first = Trainer(_stat_input(tmp_path, path), str(tmp_path / "a"))
    first.release()
    stamp = path.stat().st_mtime_ns

    def forbidden(*a, **k):
        raise AssertionError("statistics recomputed")

    monkeypatch.setattr(trainer_mod, "env_mat_sums", forbidden)
    monkeypatch.setattr(trainer_mod, "data_energy_bias", forbidden)
    for stat in (path, FIX / "stat.h5"):
        again = Trainer(_stat_input(tmp_path, stat), str(tmp_path / f"b{len(str(stat))}"))
        again.release()
        for x, y in zip(_stats_of(first), _stats_of(again)):
            np.testing.assert_allclose(y, x, rtol=1e-12, atol=0 if stat == path else 1e-15)
            if stat == path:
                assert np.array_equal(x, y)
    assert path.stat().st_mtime_ns == stamp  # nothing rewritten


def test_stat_file_of_another_model_is_refused(tmp_path):
    from deepmd_paddle.train.trainer import Trainer

    shutil.copyfile(FIX / "stat.h5", tmp_path / "stat.h5")
    with pytest.raises(ValueError, match=r"holds statistics of type_map \[\['O', 'H'\]\], not of this model's "
                                         r"\['H', 'O'\]"):
        Trainer(_stat_input(tmp_path, tmp_path / "stat.h5", type_map=("H", "O")), str(tmp_path / "a"))
    with pytest.raises(ValueError, match="descriptor statistics of other settings"):
        Trainer(_stat_input(tmp_path, tmp_path / "stat.h5", rcut=2.8), str(tmp_path / "b"))
    with pytest.raises(ConfigError, match="stat_file: got .*end.* .h5 or .hdf5"):
        _stat_input(tmp_path, tmp_path / "stat_folder")


# ----------------------------------------------------------------------------- run records
def test_tensorboard_profiling_and_timing(tmp_path, caplog):
    """tensorboard writes DeePMD-kit's scalar tags every tensorboard_freq steps (train) and the
    validation errors at each display (test), equal to lcurve.out's numbers; profiling writes a
    Chrome trace; time_training false drops the timings from the log."""
    import logging

    pytest.importorskip("tensorboardX")
    raw = _input(DATA, 1, numb_steps=4, disp_freq=2, tensorboard=True, tensorboard_freq=1, profiling=True,
                 profiling_file="prof.json", time_training=False)
    raw["training"]["validation_data"] = {"systems": [DATA[1]], "batch_size": 1, "numb_btch": 1}
    from deepmd_paddle.train.trainer import Trainer

    with caplog.at_level(logging.INFO, logger="deepmd_paddle"):
        Trainer(config.normalize(raw), str(tmp_path)).run()
    assert not [r for r in caplog.records if "s/step" in r.getMessage() or "average training time" in r.getMessage()]
    prof = json.loads((tmp_path / "prof.json").read_text())
    assert prof["traceEvents"]
    rows = np.loadtxt(tmp_path / "lcurve.out")
    for sub, col in (("train", 2), ("test", 1)):
        scalars = _read_events(tmp_path / "log" / sub)
        assert set(scalars) >= ({"l2_loss", "l2_ener_loss", "l2_force_loss"} |
                                ({"learning_rate"} if sub == "train" else set()))
        events = scalars["l2_force_loss"]
        assert [s for s, _ in events] == ([0, 1, 2, 3] if sub == "train" else [0, 2, 4])
        shown = {int(r[0]): r[4 + col] for r in rows}  # columns 5, 6: rmse_f_val, rmse_f_trn
        assert sum(s in shown for s, _ in events) >= 2
        for s, v in events:
            if s in shown:
                assert v == pytest.approx(shown[s], rel=5e-3)  # lcurve.out prints 3 digits


def _read_events(folder) -> dict:
    """{tag: [(step, value)]} of the TensorBoard event files in ``folder`` (TFRecord framing:
    length, its CRC, an Event protobuf, its CRC)."""
    import struct

    from tensorboardX.proto.event_pb2 import Event

    out = {}
    for path in sorted(pathlib.Path(folder).glob("events.out.tfevents.*")):
        data = path.read_bytes()
        pos = 0
        while pos < len(data):
            (n,) = struct.unpack("<Q", data[pos:pos + 8])
            event = Event.FromString(data[pos + 12:pos + 12 + n])
            pos += 12 + n + 4
            for v in event.summary.value:
                out.setdefault(v.tag, []).append((event.step, v.simple_value))
    return out


def test_tensorboard_without_a_writer_is_refused(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "tensorboardX" else real(name, *a))
    with pytest.raises(ConfigError, match="training/tensorboard is true but no TensorBoard writer is installed"):
        config.normalize(_input(DATA, 1, numb_steps=1, tensorboard=True))
