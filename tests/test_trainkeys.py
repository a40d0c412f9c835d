"""Training keys users set: numb_epoch, batch_size max:N / filter:N, HDF5
systems, the loss terms ae / pf / relative_f / enable_atom_ener_coeff.

DeePMD-kit's numbers (its data summary and computed numb_steps, its lcurve.out header) come
from tests/fixtures/deepmd_trainkeys/make.py; the loss values are checked against the formula
written out in numpy here."""
import json
import math
import os
import pathlib
import shutil

import numpy as np
import paddle
import pytest

from conftest import make_small_model, random_system, to_tensors
from deepmd_paddle import config
from deepmd_paddle.config import ConfigError
from deepmd_paddle.data import atom_data, hdf5
from deepmd_paddle.data.batch import DataSet, make_batch, run_length
from deepmd_paddle.data.system import DataError, load_system
from deepmd_paddle.train.loss import EnerLoss

FIX = pathlib.Path(__file__).parent / "fixtures" / "deepmd_trainkeys"
EXPECTED = json.loads((FIX / "expected.json").read_text())
DATA = [str(FIX / "data" / n) for n in ("sys_a", "sys_b", "sys_c")]


def _input(systems, batch_size, **training) -> dict:
    """make.py's input: the same data keys (the model part is ours to choose)."""
    tr = {"training_data": {"systems": systems, "batch_size": batch_size}, "seed": 1, **training}
    return {"model": {"type_map": ["O", "H"], "descriptor": {"type": "se_e2_a", "sel": [8, 16], "rcut": 3.0,
                                                              "rcut_smth": 0.5, "neuron": [4, 8], "axis_neuron": 2},
                      "fitting_net": {"neuron": [8]}},
            "training": tr}


def _dataset(cfg: dict) -> tuple[DataSet, dict]:
    tr = cfg["training"]
    data = tr["training_data"]
    systems = [load_system(p, cfg["model"]["type_map"], data["fmt"]) for p in data["systems"]]
    return DataSet(systems, data["batch_size"], data["auto_prob"], data["sys_probs"], 1), tr


CASES = {  # expected.json's case -> (systems, extra data keys) as make.py wrote its input
    "max": (DATA, {}),
    "filter": (DATA, {"auto_prob": "prob_sys_size;0:1:0.25;1:2:0.75"}),
    "auto_probs": (DATA, {"sys_probs": [0.5, 0.3, 0.2]}),
    "hdf5": ([str(FIX / "data.hdf5")], {}),
    "hdf5_group": ([str(FIX / "data.hdf5") + "#/sys_b", DATA[0]], {}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_batches_probabilities_and_epochs_as_deepmd_kit(case):
    """Batch size, batch count and probability of every system, and numb_steps from numb_epoch,
    equal DeePMD-kit's (``dp --tf train``'s data summary and its "Computed numb_steps" line)."""
    ref = EXPECTED[case]
    systems, extra = CASES[case]
    raw = _input(systems, ref["batch_size"], **ref["training"])
    raw["training"]["training_data"].update(extra)
    ds, tr = _dataset(config.normalize(raw))
    got = [{"system": s.path.split("/")[-1], "natoms": s.natoms, "batch_size": b, "nbatches": n}
           for s, b, n in zip(ds.systems, ds.batch_size, ds.nbatches)]
    assert got == [{k: v for k, v in r.items() if k != "prob"} for r in ref["systems"]]
    np.testing.assert_allclose(ds.probs, [r["prob"] for r in ref["systems"]], rtol=5e-4)  # printed to 4 digits
    assert run_length(tr, ds) == ref["numb_steps"]


def test_numb_epoch_rules(tmp_path):
    raw = _input(DATA, "max:20", numb_epoch=2.5)
    cfg = config.normalize(raw)
    assert "numb_steps" not in cfg["training"] and cfg["training"]["numb_epoch"] == 2.5
    raw = _input(DATA, "max:20", num_epoch=2, numb_steps=7)  # both: numb_steps wins (DeePMD-kit TF)
    cfg = config.normalize(raw)
    assert cfg["training"]["numb_steps"] == 7 and "numb_epoch" not in cfg["training"]
    for bad in (0, -1.0):
        with pytest.raises(ConfigError, match="numb_epoch"):
            config.normalize(_input(DATA, 1, numb_epoch=bad))
    with pytest.raises(ConfigError, match="numb_steps or training/numb_epoch is required"):
        config.normalize(_input(DATA, 1))


def test_filter_that_leaves_nothing_is_refused():
    with pytest.raises(DataError, match="no system left after removing the systems of more than 5 atoms"):
        _dataset(config.normalize(_input(DATA, "filter:5", numb_steps=1)))


# ----------------------------------------------------------------------------- HDF5
def test_hdf5_systems_equal_their_npy_folders(tmp_path):
    """Each group of data.hdf5 reads as the npy folder it was written from (every array, the
    per-atom data and the set boundaries), and a whole file expands in DeePMD-kit's order."""
    f = str(FIX / "data.hdf5")
    assert hdf5.expand(f) == [f"{f}#/sys_a", f"{f}#/sys_b", f"{f}#/sys_c"]
    need = ["atom_ener", "atom_pref", "atom_ener_coeff"]
    for path in DATA:
        a = atom_data.attach(load_system(path, ["H", "O"]), need)
        b = atom_data.attach(load_system(f"{f}#/{os.path.basename(path)}", ["H", "O"]), need)
        assert (a.atype == b.atype).all() and a.atype.tolist() != load_system(path, ["O", "H"]).atype.tolist()
        np.testing.assert_array_equal(a.coord, b.coord)
        np.testing.assert_array_equal(a.box, b.box)
        assert a.labels.keys() == b.labels.keys() and len(a.labels) == 6
        for k in a.labels:
            np.testing.assert_array_equal(a.labels[k], b.labels[k])
            np.testing.assert_array_equal(a.found[k], b.found[k])
        assert [n for _, n in a.sources] == [n for _, n in b.sources]


def test_hdf5_written_by_dpdata_trains_its_groups(tmp_path):
    """dpdata's deepmd/hdf5 writer (a file per system, or several systems as groups of one file)."""
    dpdata = pytest.importorskip("dpdata")
    s = dpdata.LabeledSystem(DATA[1], fmt="deepmd/npy")
    s.to("deepmd/hdf5", str(tmp_path / "one.h5"), set_size=4)
    cfg = config.normalize(_input([str(tmp_path / "one.h5")], 3, numb_epoch=1), base_dir=str(tmp_path))
    ds, tr = _dataset(cfg)
    assert [(x.natoms, x.nframes) for x in ds.systems] == [(9, 10)]
    assert ds.nbatches == [1 + 1 + 1]  # sets of 4, 4, 2 frames at 3 a batch: DeePMD-kit counts per set
    np.testing.assert_array_equal(ds.systems[0].labels["energy"], load_system(DATA[1], ["O", "H"]).labels["energy"])


def test_hdf5_errors_name_the_group(tmp_path):
    f = str(FIX / "data.hdf5")
    with pytest.raises(DataError, match="has no group '/nothing'"):
        config.normalize(_input([f + "#/nothing"], 1, numb_steps=1))
    with pytest.raises(DataError, match="not an HDF5 file"):
        config.normalize(_input([DATA[0] + "/type.raw#/x"], 1, numb_steps=1))
    with pytest.raises(DataError, match="not a DeePMD system"):
        load_system(f + "#/sys_a/set.000", ["O", "H"])


# ----------------------------------------------------------------------------- loss terms
def _numpy_loss(out, batch, lr, p, natoms):
    """DeePMD-kit TF's EnerStdLoss.build written out (tf/loss/ener.py), numpy only."""
    pref = {k: p[f"limit_pref_{k}"] + (p[f"start_pref_{k}"] - p[f"limit_pref_{k}"]) * lr / 1e-3
            for k in ("e", "f", "v", "ae", "pf")}
    atom_e = out["atom_energy"].reshape(batch["atom_ener"].shape)
    energy = (batch["atom_ener_coeff"] * atom_e).sum(1) if p["enable_atom_ener_coeff"] else out["energy"].ravel()
    l2 = {"e": np.mean((energy - batch["energy"].ravel()) ** 2)}
    diff_f = (batch["force"] - out["force"]).reshape(-1)
    if p["relative_f"] is not None:
        norm = np.linalg.norm(batch["force"].reshape(-1, 3), axis=1).reshape(-1, 1) + p["relative_f"]
        diff_f = (diff_f.reshape(-1, 3) / norm).reshape(-1)
    l2["f"] = np.mean(diff_f ** 2)
    l2["pf"] = np.mean(diff_f ** 2 * np.repeat(batch["atom_pref"].reshape(-1), 3))
    l2["v"] = np.mean((batch["virial"] - out["virial"]).reshape(-1) ** 2)
    l2["ae"] = np.mean((batch["atom_ener"].reshape(-1) - atom_e.reshape(-1)) ** 2)
    loss = (pref["e"] * l2["e"] / natoms + pref["f"] * l2["f"] + pref["v"] * l2["v"] / natoms
            + pref["ae"] * l2["ae"] + pref["pf"] * l2["pf"])
    rmse = {"rmse": math.sqrt(loss), "rmse_e": math.sqrt(l2["e"]) / natoms, "rmse_ae": math.sqrt(l2["ae"]),
            "rmse_f": math.sqrt(l2["f"]), "rmse_v": math.sqrt(l2["v"]) / natoms, "rmse_pf": math.sqrt(l2["pf"])}
    return loss, l2, rmse


PREFS = {"start_pref_e": 0.02, "limit_pref_e": 1.0, "start_pref_f": 1000, "limit_pref_f": 1.0, "start_pref_v": 0.5,
         "limit_pref_v": 0.5, "start_pref_ae": 1.0, "limit_pref_ae": 2.0, "start_pref_pf": 3.0, "limit_pref_pf": 1.0}


@pytest.mark.parametrize("relative_f,coeff", [(0.5, True), (None, False), (2.0, False), (None, True)])
def test_loss_terms_equal_deepmd_kit_formula(relative_f, coeff):
    """The loss of one batch of real data (sys_a: atom_ener, atom_pref, atom_ener_coeff files)
    and a model's outputs equals DeePMD-kit TF's formula in numpy, and so does every display
    error (rmse_e, rmse_ae, rmse_f, rmse_v, rmse_pf)."""
    p = {**PREFS, "relative_f": relative_f, "enable_atom_ener_coeff": coeff}
    loss_fn = EnerLoss(1e-3, **p)
    sys = atom_data.attach(load_system(DATA[0], ["O", "H"]), loss_fn.atom_data)
    assert set(loss_fn.atom_data) == {"atom_ener", "atom_pref"} | ({"atom_ener_coeff"} if coeff else set())
    batch = make_batch(atom_data.attach(sys, ["atom_ener_coeff"]), np.array([3, 8, 1]))
    model = make_small_model(False)
    b = {k: paddle.to_tensor(v) if isinstance(v, np.ndarray) else v for k, v in batch.items()}
    out = model(b["coord"], b["atype"], box=b["box"])
    lr = 3e-4
    loss, l2 = loss_fn(out, b, lr)
    ref_loss, ref_l2, ref_rmse = _numpy_loss({k: v.numpy() for k, v in out.items()}, batch, lr, p, 6)
    assert float(loss) == pytest.approx(ref_loss, rel=1e-12)
    assert l2 == pytest.approx({k: ref_l2[k] for k in ("e", "ae", "f", "v", "pf")}, rel=1e-12)
    rmse = loss_fn.rmse(float(loss), l2, 6)
    assert list(rmse) == ["rmse", "rmse_e", "rmse_ae", "rmse_f", "rmse_v", "rmse_pf"]
    assert rmse == pytest.approx(ref_rmse, rel=1e-12)
    if coeff:  # the coefficients do change the energy term: -1 and 0.5 are drawn
        assert not np.all(batch["atom_ener_coeff"] == 1)


def test_loss_term_without_its_file_is_left_out(tmp_path):
    """A system without atom_pref.npy: the pf term is NaN in the display and adds nothing
    (DeePMD-kit's find_atom_pref = 0); atom_ener_coeff defaults to 1 (E = sum_i E_i)."""
    shutil.copytree(DATA[0], tmp_path / "s")
    for s in ("set.000", "set.001"):
        for name in ("atom_pref.npy", "atom_ener_coeff.npy"):
            os.remove(tmp_path / "s" / s / name)
    loss_fn = EnerLoss(1e-3, **PREFS, enable_atom_ener_coeff=True)
    sys = atom_data.attach(load_system(str(tmp_path / "s"), ["O", "H"]), loss_fn.atom_data)
    assert not sys.found["atom_pref"].any() and (sys.labels["atom_ener_coeff"] == 1).all()
    batch = make_batch(sys, np.array([0, 1]))
    b = {k: paddle.to_tensor(v) if isinstance(v, np.ndarray) else v for k, v in batch.items()}
    out = make_small_model(False)(b["coord"], b["atype"], box=b["box"])
    loss, l2 = loss_fn(out, b, 1e-3)
    assert math.isnan(l2["pf"]) and not math.isnan(l2["ae"])
    plain, pl2 = EnerLoss(1e-3, **{**PREFS, "start_pref_pf": 0.0, "limit_pref_pf": 0.0})(out, b, 1e-3)
    assert float(loss) == pytest.approx(float(plain), rel=1e-14) and pl2["e"] == l2["e"]


def test_lcurve_columns_are_deepmd_kits(tmp_path):
    """lcurve.out's header with every term on equals DeePMD-kit's, with and without validation."""
    from deepmd_paddle.train.trainer import Trainer

    for key, valid in (("loss_lcurve_header", [DATA[1]]), ("loss_lcurve_header_no_valid", None)):
        raw = _input(DATA, 1, numb_steps=0, disp_freq=1)
        raw["loss"] = {**PREFS, "relative_f": 0.5, "enable_atom_ener_coeff": True}
        raw["model"]["fitting_net"] = {"neuron": [8]}
        if valid:
            raw["training"]["validation_data"] = {"systems": valid, "batch_size": 1, "numb_btch": 1}
        out = tmp_path / key
        Trainer(config.normalize(raw), str(out)).run()
        ours = (out / "lcurve.out").read_text().splitlines()
        assert ours[0].split() == EXPECTED[key].split()
        assert len(ours[2].split()) == len(ours[0].split()) - 1 and "nan" not in ours[2]


@pytest.mark.parametrize("relative_f,coeff", [(0.5, True), (None, False)])
def test_fused_step_gradient_with_every_term(relative_f, coeff):
    """The fused C++ training step takes the ae, pf, relative_f and atom_ener_coeff terms: the
    same loss and the same gradient in every weight as autograd through the Paddle layers."""
    model = make_small_model(True)
    from deepmd_paddle.train import fused_step

    if not fused_step.supported(model):
        pytest.skip("C++ operators not built")
    coord, atype, cell = random_system(14, 2, "triclinic", seed=4)
    nf, n = atype.shape
    rng = np.random.default_rng(5)
    c, a, b = to_tensors(coord, atype, cell)
    labels = {"energy": (nf, 1), "force": (nf, n, 3), "virial": (nf, 9), "atom_ener": (nf, n), "atom_pref": (nf, n)}
    batch = {"coord": c, "atype": a, "box": b, "natoms": n,
             **{k: paddle.to_tensor(rng.uniform(0.5, 2.0, s)) for k, s in labels.items()},
             **{f"find_{k}": 1.0 for k in labels},
             "atom_ener_coeff": paddle.to_tensor(rng.choice([1.0, -1.0, 0.5], (nf, n))), "find_atom_ener_coeff": 1.0}
    loss_fn = EnerLoss(1e-3, **PREFS, relative_f=relative_f, enable_atom_ener_coeff=coeff)
    ref = make_small_model(True)
    ref.descriptor.prefer_fused_training = False
    loss_ref, l2_ref = loss_fn(ref(c, a, b, create_graph=True), batch, 5e-4)
    loss_ref.backward()
    loss, l2 = fused_step.step(model, loss_fn, batch, 5e-4)
    assert float(loss) == pytest.approx(float(loss_ref), rel=1e-12)
    assert l2 == pytest.approx(l2_ref, rel=1e-12)
    for (name, p), q in zip(model.named_parameters(), ref.parameters()):
        scale = np.abs(q.grad.numpy()).max()
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-10, atol=1e-11 * scale, err_msg=name)
