"""The one-file frozen model through every reader and command: `dpp freeze` writes exactly one
file (default frozen_model.pb), DeepPot (jit, paddle.inference, rebuilt dynamic model), ASE, the
LAMMPS adapter, `dpp test`, `dpp model-devi`, `dpp convert` (frozen -> .dp) and `dpp compress`
from a frozen model, a checkpoint, a .dp and a DeePMD-kit .pb without -t: the smallest pair
distance stored by training (checkpoints, frozen models, .dp) or by DeePMD-kit (.pb)."""
from __future__ import annotations

import contextlib
import json
import os
import pathlib
import zipfile

import numpy as np
import pytest

from conftest import make_small_model
from test_export import needs_op
from test_train import tiny_config

from deepmd_paddle.cli import main
from deepmd_paddle.infer import DeepPot, ModelFileError
from deepmd_paddle.io import checkpoint
from deepmd_paddle.io.frozen_file import MANIFEST
from deepmd_paddle.io.load import load_model

PB = pathlib.Path(__file__).parent / "fixtures" / "deepmd_pb"
OUTPUTS = ("energy", "force", "virial", "atom_energy", "atom_virial")
pytestmark = needs_op


@contextlib.contextmanager
def _cwd(path):
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny training run (sel "auto"), then `dpp freeze` with DeePMD-kit's defaults in its folder."""
    from deepmd_paddle.data.demo import make_demo
    from deepmd_paddle.data.stats import neighbor_stat
    from deepmd_paddle.data.system import load_system
    from deepmd_paddle.train.trainer import Trainer

    root = tmp_path_factory.mktemp("run")
    data = make_demo(str(root / "emt"), seed=7, segments=1, valid_segments=1, frames_per_segment=4, every=2, n_ag=4)
    cfg = tiny_config(data, numb_steps=2, disp_freq=2, save_freq=2)
    Trainer(cfg, str(root / "train")).run()
    before = set(os.listdir(root / "train"))
    with _cwd(root / "train"):
        assert main(["freeze"]) == 0  # -c . -o frozen_model.pb
    systems = [load_system(data["train"], ["Cu", "Ag"])]
    return {"root": root, "data": data, "ckpt": str(root / "train"), "frozen": str(root / "train" / "frozen_model.pb"),
            "new_files": set(os.listdir(root / "train")) - before,
            "min_dist": neighbor_stat(systems, 4.0, ["Cu", "Ag"])[0]}


def _frame(run, nopbc=False):
    from deepmd_paddle.data.system import load_system

    s = load_system(run["data"]["valid"], ["Cu", "Ag"])
    return s.coord[:2], None if nopbc else s.box[:2], s.atype


def _eval(dp, frame):
    coord, box, atype = frame
    return dict(zip(OUTPUTS, dp.eval(coord, box, atype, atomic=True)))


# ----------------------------------------------------------------------------- freeze and read
def test_freeze_writes_one_file_at_the_default_path(run):
    assert run["new_files"] == {"frozen_model.pb"}
    with zipfile.ZipFile(run["frozen"]) as z:
        meta = json.loads(z.read(MANIFEST))
    assert meta["min_nbor_dist"] == run["min_dist"] > 0  # stored by training, carried by the frozen model


def test_members_are_read_when_needed_and_checked_again(run, tmp_path):
    """FrozenFile keeps only the description in memory (a compressed model's tables would
    otherwise stay resident twice); a file replaced after it was opened is refused by name."""
    import shutil

    from deepmd_paddle.io.frozen_file import FrozenFile

    path = str(tmp_path / "m.pb")
    shutil.copyfile(run["frozen"], path)
    ff = FrozenFile(path)
    assert set(vars(ff)) == {"path", "meta"}
    with ff.programs([""]) as prefix:
        assert os.path.getsize(prefix + ".pdiparams") > 0
    other = FrozenFile(path).model()
    other.out_bias.set_value(other.out_bias.numpy() + 1.0)
    from deepmd_paddle.io.frozen import freeze

    freeze(other, path)  # another model at the same path
    with pytest.raises(ValueError, match="changed since the file was opened"):
        with ff.programs([""]):
            pass


@pytest.mark.parametrize("nopbc", [False, True], ids=["pbc", "nopbc"])
def test_frozen_file_equals_the_checkpoint(run, nopbc):
    """jit and paddle.inference within 1e-12 of the checkpoint; the model rebuilt from the file's
    weights (backend dynamic) bit for bit; eval_descriptor too."""
    frame = _frame(run, nopbc)
    want = _eval(DeepPot(run["ckpt"]), frame)
    for backend in ("jit", "predictor", "dynamic"):
        dp = DeepPot(run["frozen"], backend=backend)
        got = _eval(dp, frame)
        for k in OUTPUTS:
            if backend == "dynamic":
                np.testing.assert_array_equal(got[k], want[k], err_msg=k)
            else:
                np.testing.assert_allclose(got[k], want[k], rtol=0, atol=1e-12 * max(1.0, np.abs(want[k]).max()))
    d_want = DeepPot(run["ckpt"]).eval_descriptor(*frame)
    np.testing.assert_allclose(DeepPot(run["frozen"]).eval_descriptor(*frame), d_want, rtol=0, atol=1e-12)


def test_ase_and_lammps_adapter_read_the_file(run):
    ase = pytest.importorskip("ase")
    from deepmd_paddle.calculator import DP
    from deepmd_paddle.lammps.adapter import LammpsModel

    coord, box, atype = _frame(run)
    atoms = ase.Atoms(["Cu" if t == 0 else "Ag" for t in atype], positions=coord[0], cell=box[0].reshape(3, 3),
                      pbc=True)
    atoms.calc = DP(run["frozen"])
    e = DeepPot(run["ckpt"]).eval(coord[:1], box[:1], atype)[0]
    assert abs(atoms.get_potential_energy() - float(e[0, 0])) < 1e-12 * len(atype)
    spec = {"models": [run["frozen"], run["ckpt"]], "dist": 1.0, "ener": 1.0, "units": "metal", "fparam": None,
            "aparam": None, "fparam_from_compute": False, "relative": None, "relative_v": None, "atomic": False,
            "rank": 0, "out_freq": 0, "out_file": "", "restart": False}
    lmp = LammpsModel(json.dumps(spec))  # what the pair style passes
    assert [dp.backend for dp in lmp.dps] == ["auto", "dynamic"] and lmp.type_map == ["Cu", "Ag"]


def test_test_and_model_devi_commands_read_the_file(run, tmp_path, capsys):
    tables = []
    for model in (run["frozen"], run["ckpt"]):
        assert main(["test", "-m", model, "-s", run["data"]["valid"]]) == 0
        tables.append(capsys.readouterr().out)
    assert tables[0] == tables[1] and "RMSE" in tables[0]  # the frozen file's errors are the checkpoint's
    out = str(tmp_path / "devi.out")
    assert main(["model-devi", "-m", run["frozen"], run["ckpt"], "-s", run["data"]["valid"], "-o", out]) == 0
    rows = np.loadtxt(out, ndmin=2)
    assert rows.shape[0] > 0 and np.abs(rows[:, 1:]).max() < 1e-10  # the same model twice: no deviation


def test_content_decides_not_the_name(run, tmp_path):
    """Our frozen model named x.pb and a real TensorFlow .pb side by side."""
    ours = tmp_path / "x.pb"
    ours.write_bytes(open(run["frozen"], "rb").read())
    assert DeepPot(str(ours)).backend == "auto" and load_model(str(ours)).type_map == ["Cu", "Ag"]
    tf = DeepPot(str(PB / "one_side.pb"))
    assert tf.backend == "dynamic" and tf.get_type_map() == ["O", "H"]


# ----------------------------------------------------------------------------- convert
def test_convert_frozen_to_dp_and_back(run, tmp_path):
    dp_file = str(tmp_path / "m.dp")
    assert main(["convert", run["frozen"], dp_file]) == 0
    frame = _frame(run)
    want = _eval(DeepPot(run["ckpt"]), frame)
    got = _eval(DeepPot(dp_file), frame)
    for k in OUTPUTS:
        np.testing.assert_allclose(got[k], want[k], rtol=0, atol=1e-12 * max(1.0, np.abs(want[k]).max()))
    assert load_model(dp_file).min_nbor_dist == run["min_dist"]
    assert load_model(checkpoint.resolve(run["ckpt"])).min_nbor_dist == run["min_dist"]


# ----------------------------------------------------------------------------- compress
def test_compress_defaults_from_a_frozen_model(run, tmp_path):
    """`dpp compress` with no flags: frozen_model.pb -> frozen_model_compressed.pb, one file, the
    tables from the training data's smallest distance (no -t)."""
    folder = tmp_path / "c"
    folder.mkdir()
    (folder / "frozen_model.pb").write_bytes(open(run["frozen"], "rb").read())
    with _cwd(folder):
        assert main(["compress"]) == 0
    assert sorted(os.listdir(folder)) == ["frozen_model.pb", "frozen_model_compressed.pb"]
    dp = DeepPot(str(folder / "frozen_model_compressed.pb"))
    spec = dp.get_model_def_script()["compress"]
    assert spec["min_nbor_dist"] == run["min_dist"] and spec["stride"] == 0.01 and spec["extrapolate"] == 5
    frame = _frame(run)
    want, got = _eval(DeepPot(run["frozen"]), frame), _eval(dp, frame)
    assert np.abs(got["force"] - want["force"]).max() < 1e-5
    assert np.abs(got["energy"] - want["energy"]).max() < 1e-5
    with pytest.raises(ValueError, match="compressed already"):
        main(["-v", "DEBUG", "compress", "-i", str(folder / "frozen_model_compressed.pb"), "-o", str(folder / "y")])


@pytest.mark.parametrize("form", ["checkpoint", "dp", "pb"])
def test_compress_from_each_input_form_without_t(run, tmp_path, form):
    if form == "checkpoint":
        src, mnd = run["ckpt"], run["min_dist"]
    elif form == "dp":
        src, mnd = str(tmp_path / "m.dp"), run["min_dist"]
        assert main(["convert", run["ckpt"], src]) == 0
    else:
        from deepmd_paddle.io.tf_graph import load_pb

        src = str(PB / "one_side.pb")
        mnd = load_pb(src).min_nbor_dist
    assert main(["compress", "-i", src, "-o", str(tmp_path / "c.ckpt"), "-s", "0.05"]) == 0
    model = load_model(str(tmp_path / "c.ckpt-0"))
    assert model.descriptor.tabulation.spec["min_nbor_dist"] == mnd and model.min_nbor_dist == mnd


def test_compress_refusals(run, tmp_path, capsys):
    # .dp output: refused before any work, and not advertised
    assert main(["compress", "-i", run["frozen"], "-o", str(tmp_path / "c.dp")]) == 1
    assert "not written as DeePMD-kit .dp" in capsys.readouterr().err and os.listdir(tmp_path) == []
    from deepmd_paddle.cli import build_parser

    sub = build_parser()._subparsers._group_actions[0].choices["compress"]
    assert ".dp" not in next(a.help for a in sub._actions if "-o" in a.option_strings)
    # a model that stores no smallest distance, without -t: named
    from deepmd_paddle.io.dp_format import save_dp

    save_dp(make_small_model(), str(tmp_path / "bare.dp"))
    assert main(["compress", "-i", str(tmp_path / "bare.dp"), "-o", str(tmp_path / "c.ckpt")]) == 1
    assert "stores no neighbour statistics (min_nbor_dist)" in capsys.readouterr().err
    # the older multi-file layout carries no weights: refused by name
    with pytest.raises(ModelFileError, match="older multi-file layout"):
        main(["-v", "DEBUG", "compress", "-i", str(_old_layout(tmp_path)), "-o", str(tmp_path / "c.ckpt")])


def _old_layout(tmp_path):
    import tarfile

    with tarfile.open(pathlib.Path(__file__).parent / "fixtures" / "frozen_v1" / "small.tar.xz") as tar:
        tar.extractall(tmp_path / "old", filter="data")
    return tmp_path / "old" / "small"


def test_freeze_into_a_folder_is_refused(run, tmp_path, capsys):
    assert main(["freeze", "-c", run["ckpt"], "-o", str(tmp_path)]) == 1
    assert "is a folder; give the model's file name" in capsys.readouterr().err and os.listdir(tmp_path) == []


def test_skip_neighbor_stat_stores_no_distance(run, tmp_path):
    """`dpp train --skip-neighbor-stat` (sel as numbers): no neighbour search, so no min_nbor_dist,
    and compress then asks for -t by name; without the flag the run above stored the data's."""
    cfg = tiny_config(run["data"], numb_steps=1, disp_freq=1, save_freq=1)
    cfg["model"]["descriptor"]["sel"] = [24, 24]
    script = tmp_path / "input.json"
    script.write_text(json.dumps(cfg))
    assert main(["train", str(script), "--outdir", str(tmp_path / "t"), "--skip-neighbor-stat"]) == 0
    assert load_model(str(tmp_path / "t")).min_nbor_dist is None
    with pytest.raises(ValueError, match="stores no neighbour statistics"):
        main(["-v", "DEBUG", "compress", "-i", str(tmp_path / "t"), "-o", str(tmp_path / "c.ckpt")])
    assert main(["compress", "-i", str(tmp_path / "t"), "-o", str(tmp_path / "c.ckpt"), "-t", str(script)]) == 0
    assert load_model(str(tmp_path / "c.ckpt-0")).min_nbor_dist == run["min_dist"]
