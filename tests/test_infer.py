"""DeepPot (deepmd_paddle.infer): DeePMD-kit's signatures and shapes, the atom budget, every
backend against DeePMD-kit's reference, clear errors; model deviation (deepmd_paddle.infer.model_devi)."""
import json
import shutil
import zipfile

import numpy as np
import pytest

from conftest import REFERENCE, WATER, needs_shared
from test_export import MODEL, frozen_reference, graphs, needs_op, rewrite_member

from deepmd_paddle import infer
import deepmd_paddle.infer.deeppot  # noqa: F401  (infer.deeppot below)
from deepmd_paddle.infer import model_devi
from deepmd_paddle.io.frozen_file import MANIFEST
from deepmd_paddle.infer import DeepPot, ModelFileError

pytestmark = needs_shared


@pytest.fixture(scope="module")
def ref():
    return np.load(REFERENCE / "water_se_e2_a_two_side_ref.npz")


def _close(a, b, rtol=1e-10):
    np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * np.abs(b).max())


def _check_reference(dp, ref):
    e, f, v, ae, av = dp.eval(ref["coord"].reshape(4, -1), ref["cell"], ref["atype"], atomic=True)
    assert e.shape == (4, 1) and f.shape == (4, 192, 3) and v.shape == (4, 9)
    assert ae.shape == (4, 192, 1) and av.shape == (4, 192, 9)
    for got, key in zip((e, f, v, ae, av), ("energy", "force", "virial", "atom_energy", "atom_virial")):
        _close(got, ref[key])
    _close(dp.eval_descriptor(ref["coord"][:1], ref["cell"][:1], ref["atype"]), ref["descriptor"])
    e, f, v = dp.eval(ref["nopbc_coord"], None, ref["nopbc_atype"])
    for got, key in zip((e, f, v), ("energy", "force", "virial")):
        _close(got, ref["nopbc_" + key])


def backends():
    return [pytest.param(None, "dynamic", id="dynamic"),
            pytest.param(False, "predictor", id="op-predictor", marks=needs_op),
            pytest.param(False, "jit", id="op-jit", marks=needs_op),
            pytest.param(True, "predictor", id="portable-predictor"),
            pytest.param(True, "jit", id="portable-jit")]


def _deeppot(portable, backend, **kw):
    path = str(MODEL) if portable is None else frozen_reference(portable)
    return DeepPot(path, backend=backend, **kw)


@pytest.mark.parametrize("portable,backend", backends()[:3])
def test_reference(ref, portable, backend):
    dp = _deeppot(portable, backend)
    assert dp.backend == backend
    _check_reference(dp, ref)


@pytest.mark.parametrize("portable,backend", [backends()[0], backends()[1], backends()[4]])
def test_atom_budget_batches_and_blocks(ref, portable, backend, monkeypatch):
    """Budget below one frame: blocks of centre atoms; between: several frames per call."""
    monkeypatch.setenv(infer.ATOM_BUDGET_ENV, "70")
    dp = _deeppot(portable, backend)
    assert dp.atom_budget == 70
    _check_reference(dp, ref)
    dp = _deeppot(portable, backend, atom_budget=400)  # 2 frames per call, the last call 2
    e, f, v = dp.eval(ref["coord"], ref["cell"], ref["atype"])
    _close(f, ref["force"])
    _close(v, ref["virial"])


@needs_op
def test_auto_backend_switches_to_the_predictor(ref, monkeypatch):
    """``auto`` on a frozen model: jit for small calls, paddle.inference from
    AUTO_PREDICTOR_ATOMS atoms per call (here lowered to 300: a 192-atom frame alone runs on
    jit, 4 frames in one call on the predictor); the reference numbers either way."""
    monkeypatch.setattr(infer.deeppot, "AUTO_PREDICTOR_ATOMS", 300)
    dp = _deeppot(False, "auto")
    assert dp.backend == "auto"
    e, f, v = dp.eval(ref["coord"][:1], ref["cell"][:1], ref["atype"])
    _close(f, ref["force"][:1])
    assert not dp._large.predictors  # 192 atoms: jit
    _check_reference(dp, ref)  # 4 frames (768 atoms) in one call: the predictor
    assert "pbc" in dp._large.predictors


def test_input_forms_and_getters(ref):
    dp = DeepPot(str(MODEL))
    assert dp.get_type_map() == ["O", "H"] and dp.get_ntypes() == 2 and dp.get_rcut() == 6.0
    assert dp.get_sel() == [46, 92] and dp.get_dim_fparam() == 0 and dp.get_dim_aparam() == 0
    assert dp.get_dim_descriptor() == 320
    c, cell, t = ref["coord"][:2], ref["cell"][:2], ref["atype"]
    e0, f0, v0 = dp.eval(c.reshape(2, -1), cell, t)
    names = np.array(dp.get_type_map())[t]
    for coords, cells, types in [(c, cell.reshape(2, 3, 3), t), (c, cell, np.tile(t, (2, 1))), (c, cell, names),
                                 (c, cell, list(t))]:
        e, f, v = dp.eval(coords, cells, types)
        _close(e, e0)
        _close(f, f0)
    e, f, v = dp.eval(c[:1], cell[0], t)  # one frame, a flat cell of 9 numbers
    _close(e, e0[:1])
    assert infer.load_evaluator(str(MODEL)).get_type_map() == ["O", "H"]


def test_bad_input(ref, tmp_path):
    dp = DeepPot(str(MODEL))
    c, cell, t = ref["coord"][:2], ref["cell"][:2], ref["atype"]
    with pytest.raises(ValueError, match=r"element\(s\) \['Xe'\] are not in the model's type map \['O', 'H'\]"):
        dp.eval(c, cell, np.where(t == 0, "Xe", "H"))
    with pytest.raises(ValueError, match="atom type 2 .* out of range"):
        dp.eval(c, cell, np.where(t == 0, 2, 1))
    with pytest.raises(ValueError, match=r"cells must have shape \[nframes, 9\] = \[2, 9\]"):
        dp.eval(c, cell[:, :6], t)
    with pytest.raises(ValueError, match=r"cells must have shape"):
        dp.eval(c, cell[:1].repeat(3, 0), t)
    with pytest.raises(ValueError, match="whole frames of 192 atoms"):
        dp.eval(c[:, :100], cell, t)
    with pytest.raises(ValueError, match="fparam"):
        dp.eval(c, cell, t, fparam=np.zeros([2, 1]))
    overlap = c[:1].copy()
    overlap[0, 1] = overlap[0, 0] + 1e-5
    with pytest.raises(ValueError, match="overlap"):
        dp.eval(overlap, cell[:1], t)
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "graph.pb").write_bytes(b"\x08\x01")
    for path, msg in [(tmp_path / "notes.txt", "not a model"), (tmp_path / "graph.pb", "graph nodes"),
                      (tmp_path, "not a model"), (tmp_path / "missing.dp", "does not exist")]:
        with pytest.raises((ModelFileError, FileNotFoundError), match=msg):
            DeepPot(str(path))
    with pytest.raises(ValueError, match="backend"):
        DeepPot(str(MODEL), backend="tensorflow")


@pytest.mark.parametrize("portable", graphs())
def test_frozen_errors(ref, portable, tmp_path):
    path = frozen_reference(portable)
    dp = DeepPot(path, atom_budget=100)
    overlap = ref["coord"][:1].copy()
    overlap[0, 5] = overlap[0, 3]
    with pytest.raises(ValueError, match="overlap"):
        dp.eval(overlap, ref["cell"][:1], ref["atype"])  # via the neighbour list of the blocks
    dp = DeepPot(path)
    with pytest.raises(ValueError, match="overlap"):
        dp.eval(overlap, ref["cell"][:1], ref["atype"])  # from the full program's mindist
    m = str(tmp_path / "m.pb")
    rewrite_member(path, m, "model.lower.json", None)
    with pytest.raises(ModelFileError, match=r"m\.pb: .*members \['model.lower.json'\] are missing"):
        DeepPot(m)
    meta = json.loads(zipfile.ZipFile(path).read(MANIFEST))
    if not portable:  # an operator whose attributes changed since freezing: refused, not run
        meta["custom_ops"]["deepmd_env_mat"][2][0][1] = 15  # (custom_ops are outside the checksum)
        rewrite_member(path, m, MANIFEST, json.dumps(meta).encode())
        with pytest.raises(ModelFileError, match=r"another version of the C\+\+ operator\(s\) \['deepmd_env_mat'\]"):
            DeepPot(m)
    rewrite_member(path, m, MANIFEST, b"{}")
    with pytest.raises(ModelFileError, match="format"):
        DeepPot(m)


# ----------------------------------------------------------------------------- model deviation
# `dp --tf model-devi -m ref.pb pert1.pb pert2.pb -s sys -f 10` (DeePMD-kit 3.2.0) on the first 5
# frames of data_3, models made by _perturb below and converted with `dp convert-backend`
DEEPMD_DEVI = np.array([
    [0, 8.934785e-04, 3.345680e-05, 5.086712e-04, 1.775210e-02, 2.930276e-03, 8.297788e-03, 2.199857e-01],
    [10, 8.622798e-04, 6.247888e-05, 5.061644e-04, 1.605322e-02, 1.093492e-03, 8.530112e-03, 2.199499e-01],
    [20, 9.005871e-04, 1.549738e-05, 5.169500e-04, 1.559558e-02, 2.272029e-03, 8.037549e-03, 2.200722e-01],
    [30, 9.455457e-04, 3.495881e-05, 5.266885e-04, 1.541635e-02, 2.242732e-03, 7.921850e-03, 2.200667e-01],
    [40, 8.939775e-04, 1.531383e-06, 5.122311e-04, 1.599508e-02, 1.655913e-03, 8.211042e-03, 2.200072e-01],
])


def _perturb(dst, seed, scale=0.02):
    """The weight matrices (2-d datasets) times 1 + 2% noise."""
    import h5py

    shutil.copy(MODEL, dst)
    rng = np.random.default_rng(seed)
    with h5py.File(dst, "r+") as f:
        for k in sorted(f.keys()):
            a = f[k][()]
            if a.dtype.kind == "f" and a.ndim == 2:
                f[k][...] = a * (1 + scale * rng.standard_normal(a.shape))
    return str(dst)


def test_model_devi_matches_deepmd_kit(tmp_path, monkeypatch):
    system = tmp_path / "sys"
    (system / "set.000").mkdir(parents=True)
    for name in ("type.raw", "type_map.raw"):
        shutil.copy(WATER / "data_3" / name, system / name)
    for name in ("coord", "box"):
        np.save(system / "set.000" / f"{name}.npy", np.load(WATER / "data_3" / "set.000" / f"{name}.npy")[:5])
    models = [str(MODEL), _perturb(tmp_path / "p1.dp", 1), _perturb(tmp_path / "p2.dp", 2)]
    monkeypatch.chdir(tmp_path)
    from deepmd_paddle.cli import main

    assert main(["model-devi", "-m", *models, "-s", "sys", "-o", "devi.out", "-f", "10"]) == 0
    lines = (tmp_path / "devi.out").read_text().splitlines()
    assert lines[0] == "# sys"
    assert lines[1].split() == ["#", "step", *model_devi.COLUMNS]
    assert lines[2].startswith("           0       8.934785e-04")  # %12d then %19.6e, as DeePMD-kit
    np.testing.assert_allclose(np.loadtxt(tmp_path / "devi.out"), DEEPMD_DEVI, rtol=2e-6, atol=1e-12)


def test_model_devi_definitions_and_errors():
    rng = np.random.default_rng(0)
    fs, vs, es = rng.normal(size=(3, 2, 5, 3)), rng.normal(size=(3, 2, 9)), rng.normal(size=(3, 2, 1))
    per_atom = np.sqrt(((fs - fs.mean(0)) ** 2).sum(-1).mean(0))
    np.testing.assert_allclose(model_devi.calc_model_devi_f(fs), [per_atom.max(-1), per_atom.min(-1), per_atom.mean(-1)])
    comp = vs.std(0)  # DeePMD-kit's functions take virials and energies already divided by natoms
    np.testing.assert_allclose(model_devi.calc_model_devi_v(vs), [comp.max(-1), comp.min(-1), np.sqrt((comp**2).mean(-1))])
    np.testing.assert_allclose(model_devi.calc_model_devi_e(es), es.std(0).ravel())
    dp = DeepPot(str(MODEL))
    with pytest.raises(ValueError, match="at least 2 models"):
        model_devi.calc_model_devi(np.zeros([1, 3, 3]), None, [0, 1, 1], [dp])

    class Other:
        def get_type_map(self):
            return ["H", "O"]
    with pytest.raises(ValueError, match="different type maps"):
        model_devi.check_type_maps([dp, Other()])
