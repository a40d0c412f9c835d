"""DPLR (model/modifier of type dipole_charge) against DeePMD-kit 3.2 itself, and its derivatives.

References: tests/fixtures/deepmd_dplr (make.py there): DeePMD-kit's dipole model dw.pb, its DPLR
energy model ener_dplr.pb, and on 3 frames of its water example (128 O + 256 H) its DeepDipole,
EwaldRecp (orthorhombic and triclinic box), DipoleChargeModifier.eval, DeepPot with and without the
modifier, the labels its data loader modifies, and `dp --tf test`'s report.
"""
import json
import os
import re
import shutil

import numpy as np
import paddle
import pytest

from conftest import REPO
from deepmd_paddle import config
from deepmd_paddle.cli import main
from deepmd_paddle.data.system import load_system
from deepmd_paddle.infer.deeppot import DeepPot
from deepmd_paddle.io.tf_dipole import load_dipole_pb
from deepmd_paddle.model.dplr import DipoleChargeModifier
from deepmd_paddle.model.ewald import ewald_recp
from deepmd_paddle.train import dplr
from deepmd_paddle.train.trainer import Trainer

FIX = REPO / "tests" / "fixtures" / "deepmd_dplr"
REF = np.load(FIX / "ref.npz")
EXAMPLE = REPO / "tests" / "fixtures" / "deepmd_examples" / "water_dplr_ener.json"
TOL = 1e-12  # relative to the largest magnitude of each output


def close(mine, ref, tol=TOL):
    mine, ref = np.asarray(mine, "float64").reshape(-1), np.asarray(ref, "float64").reshape(-1)
    assert np.abs(mine - ref).max() <= tol * np.abs(ref).max(), np.abs(mine - ref).max() / np.abs(ref).max()


def frames():
    return REF["coord"].astype("float64"), REF["box"].astype("float64"), REF["atype"]


def write_system(path, n=3):
    """The fixture's frames as a DeePMD-kit system (labels as stored by DeePMD-kit's example)."""
    os.makedirs(path / "set.000")
    np.savetxt(path / "type.raw", REF["atype"], fmt="%d")
    (path / "type_map.raw").write_text("O\nH\n")
    for key in ("coord", "box", "energy", "force", "virial"):
        np.save(path / "set.000" / f"{key}.npy", REF[key][:n].reshape(n, -1))
    return path


@pytest.fixture(scope="module")
def modifier():
    return DipoleChargeModifier(load_dipole_pb(str(FIX / "dw.pb")), "dw.pb", [-8], [6, 1], 1.0, 0.4)


# ----------------------------------------------------------------------------- the pieces
@pytest.mark.parametrize("case", ["ewald", "ewald_tri"])
def test_ewald_reciprocal_sum_equals_deepmd_kits(case):
    h, beta = float(np.float32(1.0)), float(np.float32(0.4))  # (DeePMD-kit's operator takes float32 attributes)
    e, f, v = ewald_recp(REF[f"{case}_coord"].reshape(-1, 3), REF[f"{case}_charge"].reshape(-1),
                         REF[f"{case}_box"].reshape(3, 3), h, beta)
    close(e, REF[f"{case}_e"])
    close(f, REF[f"{case}_f"])
    close(v, REF[f"{case}_v"])


def test_ewald_force_and_virial_are_derivatives_of_its_energy():
    rng = np.random.default_rng(1)
    box = np.array([[9.0, 0.0, 0.0], [1.2, 9.5, 0.0], [-0.8, 0.7, 10.0]])
    r = rng.random((16, 3)) @ box + rng.normal(size=(16, 3)) * 4  # some outside the box
    q = rng.normal(size=16)
    q -= q.mean()
    e, f, v = ewald_recp(r, q, box, 1.0, 0.4)
    h = 1e-5
    for i, d in [(0, 0), (5, 1), (11, 2)]:
        rp, rm = r.copy(), r.copy()
        rp[i, d] += h
        rm[i, d] -= h
        fd = -(ewald_recp(rp, q, box, 1.0, 0.4)[0] - ewald_recp(rm, q, box, 1.0, 0.4)[0]) / (2 * h)
        assert abs(f[i, d] - fd) < 1e-7 * np.abs(f).max()
    eps = 1e-6  # virial = -dE/d(strain), positions and box strained together
    for a, b in [(0, 0), (0, 1), (2, 1)]:
        s = np.zeros((3, 3))
        s[a, b] = eps
        ep = ewald_recp(r @ (np.eye(3) + s), q, box @ (np.eye(3) + s), 1.0, 0.4)[0]
        em = ewald_recp(r @ (np.eye(3) - s), q, box @ (np.eye(3) - s), 1.0, 0.4)[0]
        assert abs(v[3 * a + b] + (ep - em) / (2 * eps)) < 1e-5 * np.abs(v).max()


def test_dipole_model_equals_deepmd_kits_deepdipole(modifier):
    coord, box, atype = frames()
    nf = coord.shape[0]
    p = modifier.dipole(paddle.to_tensor(coord), paddle.to_tensor(np.tile(atype, (nf, 1))),
                        paddle.to_tensor(box))["dipole"].numpy()
    close(p, REF["dipole"])  # (zero rows for the H atoms, as DeePMD-kit returns them)
    close(p.sum(axis=1), REF["dipole_global"])
    assert modifier.dipole.get_sel_type() == [0] and modifier.dipole.type_map == ["O", "H"]


def test_modifier_equals_deepmd_kits(modifier):
    e, f, v = modifier.correction(*frames())
    close(e, REF["modifier_e"])
    close(f, REF["modifier_f"])
    close(v, REF["modifier_v"])


def test_modifier_force_and_virial_are_derivatives_of_its_energy(modifier):
    """The chain rule through the Wannier centroids w_i = r_i + p_i(r): F = -dE/dr, W = -dE/d(strain)."""
    coord, box, atype = frames()
    coord, box = coord[:1], box[:1]
    e, f, v = modifier.correction(coord, box, atype)
    h = 1e-4
    for k, d in [(0, 2), (130, 0), (300, 1)]:  # an O (with a centroid), two H
        cp, cm = coord.copy(), coord.copy()
        cp[0, k, d] += h
        cm[0, k, d] -= h
        fd = -(modifier.correction(cp, box, atype)[0] - modifier.correction(cm, box, atype)[0])[0] / (2 * h)
        assert abs(f[0, k, d] - fd) < 1e-6 * np.abs(f).max()
    b, eps = box.reshape(3, 3), 1e-5
    for a, c in [(0, 0), (1, 2)]:
        s = np.zeros((3, 3))
        s[a, c] = eps
        ep = modifier.correction(coord @ (np.eye(3) + s), (b @ (np.eye(3) + s)).reshape(1, 9), atype)[0]
        em = modifier.correction(coord @ (np.eye(3) - s), (b @ (np.eye(3) - s)).reshape(1, 9), atype)[0]
        assert abs(v[0, 3 * a + c] + (ep - em)[0] / (2 * eps)) < 1e-6 * np.abs(v).max()


# ----------------------------------------------------------------------------- DeePMD-kit's DPLR .pb
def test_dplr_pb_evaluates_as_deepmd_kits_deeppot(tmp_path, monkeypatch):
    coord, box, atype = frames()
    monkeypatch.chdir(tmp_path)  # (DeePMD-kit's DeepPot reads dw.pb from here; ours keeps the graph's own dipole model)
    dp = DeepPot(str(FIX / "ener_dplr.pb"))
    e, f, v = dp.eval(coord, box, atype)
    close(e, REF["pot_e"])
    close(f, REF["pot_f"])
    close(v, REF["pot_v"])
    with pytest.raises(RuntimeError, match="atomic"):  # DeePMD-kit refuses it too
        dp.eval(coord, box, atype, atomic=True)
    sr = DeepPot(str(FIX / "ener_dplr.pb"), skip_modifier=True)
    for mine, key in zip(sr.eval(coord, box, atype, atomic=True), ("e", "f", "v", "ae", "av")):
        close(mine, REF[f"sr_{key}"])
    assert dp.get_model_def_script()["modifier"]["model_charge_map"] == [-8.0]


def test_dpp_test_prints_what_dp_test_prints(tmp_path, capsys):
    data = write_system(tmp_path / "data3")
    assert main(["test", "-m", str(FIX / "ener_dplr.pb"), "-s", str(data), "-n", "3"]) == 0
    printed = capsys.readouterr().out
    ref = (FIX / "dp_test.txt").read_text()
    for name in ("Energy RMSE", "Energy MAE/Natoms", "Force  RMSE", "Virial RMSE", "Stress RMSE"):
        want = float(re.search(rf"{re.escape(name)}\s*: (\S+)", ref).group(1))
        got = float(re.search(rf"{re.escape(name)}\s*: (\S+)", printed).group(1))
        assert got == pytest.approx(want, rel=1e-6), name  # (DeePMD-kit prints 7 digits)


def test_labels_modified_as_deepmd_kits_loader(modifier, tmp_path):
    s = load_system(str(write_system(tmp_path / "sys")), ["O", "H"])
    dplr.modify_systems(modifier, [s], "test")
    close(s.labels["energy"], REF["modified_energy"])
    close(s.labels["force"], REF["modified_force"])
    close(s.labels["virial"], REF["modified_virial"])


# ----------------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """DeePMD-kit's examples/water/dplr/train/ener.json, unchanged but for numb_steps, with the
    fixture's dw.pb beside it and 3 frames of the example's data as its `data` system."""
    root = tmp_path_factory.mktemp("dplr")
    shutil.copy(FIX / "dw.pb", root / "dw.pb")
    write_system(root / "data")
    raw = json.loads(EXAMPLE.read_text())
    raw["training"]["numb_steps"] = 4
    (root / "ener.json").write_text(json.dumps(raw))
    cfg = config.load(str(root / "ener.json"))
    trainer = Trainer(cfg, str(root / "run"))
    trainer.run()
    return root, trainer


def test_deepmd_kit_dplr_example_trains_and_keeps_its_dipole_model(trained, modifier):
    root, trainer = trained
    model = trainer.model
    assert model.modifier is not None and not any(not p.stop_gradient for p in model.modifier.parameters())
    assert all(id(p) not in {id(q) for q in model.modifier.parameters()} for p in trainer.opt._parameter_list)
    for k, w in modifier.dipole.state_dict().items():  # the file's weights, unchanged by training
        np.testing.assert_array_equal(model.modifier.dipole.state_dict()[k].numpy(), w.numpy())
    # the labels it trained on are DeePMD-kit's modified ones
    s = trainer.train_data.systems[0]
    close(s.labels["energy"], REF["modified_energy"])
    out = json.loads((root / "run" / "out.json").read_text())
    assert out["model"]["modifier"]["dipole_model"]["fitting_net"]["sel_type"] == [0]
    lc = np.loadtxt(root / "run" / "lcurve.out", ndmin=2)
    assert lc.shape[0] >= 1 and np.isfinite(lc).all()


def test_frozen_dplr_model_needs_no_dipole_file_and_adds_the_correction(trained, tmp_path):
    root, trainer = trained
    frozen = tmp_path / "frozen_model.pb"
    assert main(["freeze", "-c", str(root / "run"), "-o", str(frozen)]) == 0
    os.remove(root / "dw.pb")  # the frozen model and the checkpoint carry the dipole model
    coord, box, atype = frames()
    full = DeepPot(str(frozen)).eval(coord, box, atype)
    ckpt = DeepPot(str(root / "run")).eval(coord, box, atype)
    short = DeepPot(str(frozen), skip_modifier=True).eval(coord, box, atype)
    for a, b in zip(full, ckpt):
        close(a, b, 1e-12)
    close(full[0] - short[0], REF["modifier_e"])  # the same dipole model: DeePMD-kit's correction
    close(full[1] - short[1], REF["modifier_f"], 1e-11)
    with pytest.raises(NotImplementedError, match="modifier"):  # no .dp form: the modifier would be lost
        trainer.model.serialize()


def test_bad_dplr_inputs_are_named(tmp_path, modifier):
    raw = json.loads(EXAMPLE.read_text())
    write_system(tmp_path / "data")
    (tmp_path / "ener.json").write_text(json.dumps(raw))
    with pytest.raises(FileNotFoundError, match="dw.pb"):  # the dipole model is missing
        Trainer(config.load(str(tmp_path / "ener.json")), str(tmp_path / "run"))
    shutil.copy(FIX / "ener_dplr.pb", tmp_path / "dw.pb")  # an energy model where the dipole model should be
    with pytest.raises(ValueError, match="dipole model"):
        Trainer(config.load(str(tmp_path / "ener.json")), str(tmp_path / "run2"))
    with pytest.raises(ValueError, match="model_charge_map"):
        DipoleChargeModifier(modifier.dipole, "dw.pb", [-8, 1], [6, 1])
    with pytest.raises(ValueError, match="type_map"):
        DipoleChargeModifier(modifier.dipole, "dw.pb", [-8], [6, 1], type_map=["H", "O"])
    coord, box, atype = frames()
    with pytest.raises(ValueError, match="open"):
        modifier.correction(coord, None, atype)


def test_restart_reads_the_dipole_model_from_the_checkpoint(trained):
    """A restart needs no dw.pb: the checkpoint's model section has the record, its tensors the
    weights; the labels are modified again as DeePMD-kit's."""
    root, trainer = trained
    moved = root / "dw.pb.away"
    if (root / "dw.pb").exists():
        os.rename(root / "dw.pb", moved)
    raw = json.loads((root / "ener.json").read_text())
    raw["training"]["numb_steps"] = 6
    (root / "ener6.json").write_text(json.dumps(raw))
    again = Trainer(config.load(str(root / "ener6.json")), str(root / "run"), restart=str(root / "run"))
    assert again.start_step == 4
    close(again.train_data.systems[0].labels["force"], REF["modified_force"])
    for k, w in trainer.model.modifier.dipole.state_dict().items():
        np.testing.assert_array_equal(again.model.modifier.dipole.state_dict()[k].numpy(), w.numpy())
    again.run()
    assert (root / "run" / "checkpoint").read_text().strip() == "model.ckpt-6"


def test_lammps_pair_style_says_it_runs_the_short_range_part():
    from deepmd_paddle.lammps.adapter import _load

    with pytest.warns(UserWarning, match="fix dplr"):
        dp = _load(str(FIX / "ener_dplr.pb"), None)
    assert dp.modifier is None  # the pair style evaluates the short-range model, as DeePMD-kit's does
