"""DeePMD-kit's command lines with ``dpp`` for ``dp``: ``test``, ``model-devi``, ``neighbor-stat``
and the model-deviation functions, against DeePMD-kit 3.2's outputs on the same .pb models and data
(tests/fixtures/deepmd_commands/make.py made them; test_commands_models.py: change-bias, show,
train, dpdata)."""
import os

import numpy as np
import pytest

from conftest import REPO, WATER, needs_shared
from deepmd_paddle.cli import main
from deepmd_paddle.infer import model_devi

FIX = REPO / "tests" / "fixtures" / "deepmd_commands"


def _load_fixture_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("deepmd_commands_make", FIX / "make.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PB = REPO / "tests" / "fixtures" / "deepmd_pb"
ONE, TWO = str(PB / "one_side.pb"), str(PB / "two_side.pb")
build_systems = _load_fixture_script().build_systems  # the fixture's systems (plain numpy)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A folder with sys/a (no virial labels) and sys/b (virial labels), as the fixture's."""
    if not WATER.is_dir():
        pytest.skip("../shared (water data) is absent")
    root = tmp_path_factory.mktemp("commands")
    build_systems(str(WATER), str(root / "sys"))
    (root / "systems.txt").write_text("sys/a\nsys/b\n")
    return root


# ----------------------------------------------------------------------------- model-devi functions
def test_model_devi_functions_match_deepmd_kit():
    d = np.load(FIX / "functions.npz")
    fs, rf, vs, rv, es, re_ = (d[k] for k in ("in_fs", "in_real_f", "in_vs", "in_real_v", "in_es", "in_real_e"))
    got = {"f": model_devi.calc_model_devi_f(fs), "f_rel": model_devi.calc_model_devi_f(fs, relative=1.0),
           "f_real": model_devi.calc_model_devi_f(fs, rf), "f_real_rel": model_devi.calc_model_devi_f(fs, rf, 0.5),
           "f_atomic": model_devi.calc_model_devi_f(fs, atomic=True), "v": model_devi.calc_model_devi_v(vs),
           "v_real": model_devi.calc_model_devi_v(vs, rv),
           "v_rel1": model_devi.calc_model_devi_v(vs[:, :1], relative=1.0),
           "v_real_rel1": model_devi.calc_model_devi_v(vs[:, :1], rv[:1], relative=1.0)}
    for key, res in got.items():
        assert len(res) == (4 if key == "f_atomic" else 3)
        for i, r in enumerate(res):
            np.testing.assert_allclose(r, d[f"{key}_{i}"], rtol=1e-12, atol=0, err_msg=key)
    np.testing.assert_allclose(model_devi.calc_model_devi_e(es), d["e"], rtol=1e-12)
    np.testing.assert_allclose(model_devi.calc_model_devi_e(es, re_), d["e_real"], rtol=1e-12)
    # several frames: the relative virial deviation is taken per frame
    many = model_devi.calc_model_devi_v(vs, relative=1.0)
    for f in range(vs.shape[1]):
        one = model_devi.calc_model_devi_v(vs[:, f:f + 1], relative=1.0)
        np.testing.assert_allclose([m[f] for m in many], [o[0] for o in one], rtol=1e-14)


def test_write_model_devi_out_is_deepmd_kits_text(tmp_path):
    d = np.load(FIX / "functions.npz")
    for key, atomic in (("plain", False), ("atomic", True)):
        out = tmp_path / key
        assert model_devi.write_model_devi_out(d[f"in_devi_{key}"], str(out), header="sys/x", atomic=atomic) is not None
        assert out.read_text() == str(d[f"text_{key}"])
    with pytest.raises(ValueError, match="n_frames x 8 columns"):
        model_devi.write_model_devi_out(np.zeros((2, 5)), str(tmp_path / "bad"))


# ----------------------------------------------------------------------------- dpp model-devi
@needs_shared
@pytest.mark.parametrize("name, extra, system", [
    ("plain", [], "sys/a"), ("atomic", ["--atomic"], "sys/a"), ("relative", ["--relative", "1.0"], "sys/a"),
    ("freq", ["-f", "10"], "sys/a"), ("real_error", ["--real_error"], "sys/b")])
def test_model_devi_file_is_deepmd_kits(work, monkeypatch, name, extra, system):
    monkeypatch.chdir(work)
    assert main(["model-devi", "-m", ONE, TWO, "-s", system, "-o", f"{name}.out", *extra]) == 0
    ours, theirs = (work / f"{name}.out").read_text(), (FIX / "model_devi" / f"{name}.out").read_text()
    assert ours.splitlines()[:2] == theirs.splitlines()[:2]
    np.testing.assert_allclose(np.loadtxt(work / f"{name}.out"), np.loadtxt(FIX / "model_devi" / f"{name}.out"),
                               rtol=2e-6, atol=1e-12)
    assert ours == theirs  # the .pb models evaluate to 1e-10: the printed digits agree


@needs_shared
def test_model_devi_errors(work, monkeypatch, capsys):
    monkeypatch.chdir(work)
    assert main(["model-devi", "-m", TWO, "-s", "sys/a"]) == 1
    assert "at least 2 models, got 1" in capsys.readouterr().err
    assert main(["model-devi", "-m", ONE, TWO, "-s", "sys/a", "--relative", "-1"]) == 1
    assert "--relative: the level must be a positive number" in capsys.readouterr().err
    assert main(["model-devi", "-m", ONE, TWO, "-s", "sys/a", "--real_error"]) == 1  # sys/a has no virial labels
    assert "--real_error needs the labels ['virial']" in capsys.readouterr().err
    assert main(["model-devi", "-s", "sys/a"]) == 1  # DeePMD-kit's default models graph.000 ... are not there
    assert "graph.000" in capsys.readouterr().err


# ----------------------------------------------------------------------------- dpp test
@needs_shared
def test_test_report_and_detail_files_are_deepmd_kits(work, monkeypatch, capsys):
    monkeypatch.chdir(work)
    assert main(["test", "-m", TWO, "-f", "systems.txt", "-n", "3", "-d", "out/detail"]) == 0
    printed = [ln.strip() for ln in capsys.readouterr().out.splitlines()]
    theirs = (FIX / "dp_test" / "detail.log").read_text().splitlines()
    assert printed[:len(theirs)] == theirs
    for suffix in ("e", "e_peratom", "f", "v", "v_peratom", "s"):
        ours, ref = work / "out" / f"detail.{suffix}.out", FIX / "dp_test" / f"detail.{suffix}.out"
        assert ours.read_text(encoding="utf-8").splitlines()[0] == ref.read_text(encoding="utf-8").splitlines()[0]
        np.testing.assert_allclose(np.loadtxt(ours), np.loadtxt(ref), rtol=1e-9, atol=1e-11, err_msg=suffix)
    # -s: DeePMD-kit's default system folder ".", searched; .v.out without virial labels (data columns 0)
    monkeypatch.chdir(work / "sys" / "a")
    assert main(["test", "-m", TWO, "-d", str(work / "single")]) == 0
    printed = [ln.strip() for ln in capsys.readouterr().out.splitlines()]
    theirs = (FIX / "dp_test" / "single.log").read_text().splitlines()
    assert printed[2:len(theirs)] == theirs[2:]  # after the system's name ("." here, "sys/a" there)
    v = np.loadtxt(work / "single.v.out")
    np.testing.assert_allclose(v, np.loadtxt(FIX / "dp_test" / "single.v.out"), rtol=1e-9, atol=1e-11)
    assert v.shape == (4, 18) and not v[:, :9].any() and v[:, 9:].any()


@needs_shared
def test_test_flags(work, monkeypatch, capsys):
    monkeypatch.chdir(work)
    assert main(["test", "-m", TWO, "-s", "sys/b", "--shuffle-test", "--seed", "3", "-n", "2",
                 "-d", "shuffled"]) == 0
    capsys.readouterr()
    e = np.loadtxt(work / "shuffled.e.out")
    labels = np.load(work / "sys" / "b" / "set.000" / "energy.npy")
    rows = [int(np.argmin(np.abs(labels - x))) for x in e[:, 0]]
    assert len(set(rows)) == 2 and np.allclose(e[:, 0], labels[rows])
    np.save(work / "sys" / "b" / "set.000" / "atom_ener.npy", np.full((3, 192), -0.5))
    try:
        assert main(["test", "-m", TWO, "-s", "sys/b", "-a"]) == 0
        assert "Atomic ener RMSE" in capsys.readouterr().out
        assert main(["test", "-m", TWO, "-s", "sys/a", "-a"]) == 1
        assert "atom_ener.npy is missing" in capsys.readouterr().err
    finally:
        os.remove(work / "sys" / "b" / "set.000" / "atom_ener.npy")
    assert main(["test", "-m", TWO, "-f", "nowhere.txt"]) == 1
    assert "-f/--datafile: cannot read nowhere.txt" in capsys.readouterr().err
    assert main(["test", "-s", "sys/a"]) == 1  # DeePMD-kit's default model frozen_model is not there
    assert "frozen_model" in capsys.readouterr().err


# ----------------------------------------------------------------------------- dpp neighbor-stat
@needs_shared
def test_neighbor_stat_type_map_from_the_data(work, monkeypatch, capsys):
    monkeypatch.chdir(work)
    assert main(["neighbor-stat", "-s", "sys", "-r", "6.0"]) == 0
    out = capsys.readouterr().out
    theirs = (FIX / "neighbor_stat" / "plain.log").read_text().splitlines()
    assert out.splitlines()[:len(theirs)] == theirs  # DeePMD-kit's lines, to the digit
    assert main(["neighbor-stat", "-s", "sys", "-r", "6.0", "-t", "O", "H"]) == 0
    given = capsys.readouterr().out
    line = [ln for ln in out.splitlines() if ln.startswith("max_nbor_size")][0]
    assert line in given and [ln for ln in out.splitlines() if ln.startswith("min_nbor_dist")][0] in given
    per_type = np.array(line.split(":")[1].strip(" []").split(), int)
    assert main(["neighbor-stat", "-s", "sys", "-r", "6.0", "--mixed-type"]) == 0
    out = capsys.readouterr().out
    theirs = (FIX / "neighbor_stat" / "mixed.log").read_text().splitlines()
    assert out.splitlines()[:len(theirs)] == theirs
    mixed = int([ln for ln in out.splitlines() if ln.startswith("max_nbor_size")][0].split(":")[1].strip(" []"))
    assert per_type.max() < mixed <= per_type.sum()
    os.rename(work / "sys" / "b" / "type_map.raw", work / "tm")
    try:
        assert main(["neighbor-stat", "-s", "sys", "-r", "6.0"]) == 1
        assert "has no type_map.raw; name the types with -t" in capsys.readouterr().err
    finally:
        os.rename(work / "tm", work / "sys" / "b" / "type_map.raw")


def test_log_flags_before_or_after_the_command(tmp_path):
    from deepmd_paddle.cli import build_parser

    p = build_parser()
    assert p.parse_args(["test", "-v", "3"]).log_level == "3"  # DeePMD-kit's number for DEBUG
    args = p.parse_args(["-v", "ERROR", "test", "-l", str(tmp_path / "log")])
    assert (args.log_level, args.log_path) == ("ERROR", str(tmp_path / "log"))
    assert p.parse_args(["test"]).log_level is None  # INFO, set by main
    with pytest.raises(SystemExit):
        p.parse_args(["test", "-v", "LOUD"])


@needs_shared
def test_model_names_without_suffix(work, monkeypatch, capsys):
    """DeePMD-kit's defaults name models without suffix: frozen_model, graph.000 ... (.pb found)."""
    import shutil

    monkeypatch.chdir(work)
    shutil.copy(TWO, work / "frozen_model.pb")
    for i, m in enumerate((ONE, TWO, ONE, TWO)):
        shutil.copy(m, work / f"graph.00{i}.pb")
    try:
        assert main(["test", "-s", "sys/a", "-n", "1"]) == 0
        assert "Force  RMSE" in capsys.readouterr().out
        assert main(["model-devi", "-s", "sys/a", "-o", "defaults.out"]) == 0
        assert np.loadtxt(work / "defaults.out").shape == (4, 8)
    finally:
        for f in ["frozen_model.pb"] + [f"graph.00{i}.pb" for i in range(4)]:
            os.remove(work / f)
