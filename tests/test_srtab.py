"""use_srtab: a tabulated pair potential blended with the model (model/srtab.py), against
DeePMD-kit's PairTab splines and a DeePMD-kit use_srtab model (tests/fixtures/deepmd_trainkeys/
make.py --srtab)."""
import json

import numpy as np
import pytest

from conftest import random_system, to_tensors
from deepmd_paddle import config
from test_trainkeys import DATA, FIX


# ----------------------------------------------------------------------------- use_srtab
SRTAB = FIX / "srtab"


@pytest.mark.parametrize("name", ["tail", "zero"])
def test_pair_table_splines_equal_deepmd_kits(name):
    """The table extended to rcut (zeros, or DeePMD-kit's cubic to zero) and its clamped-spline
    coefficients equal DeePMD-kit's PairTab (tab_info, tab_data) for rcut 3.0."""
    from deepmd_paddle.model import srtab

    ref = np.load(SRTAB / "expected.npz")
    vdata = srtab.read_table(str(SRTAB / f"table_{name}.txt"))
    grid = srtab.extend_to(vdata, 3.0)
    info = ref[f"{name}_tab_info"]
    assert (grid[0, 0], grid.shape[0] - 1, 2) == pytest.approx((info[0], info[2], info[3]))
    ours = srtab.spline_table(grid, 2)  # 4 pairs x nspline x 4
    np.testing.assert_allclose(ours.reshape(-1), ref[f"{name}_tab_data"], rtol=1e-11, atol=1e-13)


def _srtab_trainer(tmp_path):
    from deepmd_paddle.train.trainer import Trainer

    raw = json.loads((SRTAB / "input.json").read_text())
    raw["model"]["use_srtab"] = str(SRTAB / "table_tail.txt")
    raw["training"]["training_data"]["systems"] = [DATA[1]]
    t = Trainer(config.normalize(raw), str(tmp_path / "run"))
    return t, t.run()


def test_srtab_model_equals_deepmd_kit(tmp_path):
    """A use_srtab model built here from DeePMD-kit's input (its seeds: the same initial weights;
    the same statistics) gives DeePMD-kit's frozen model's energy, forces, virial and atomic
    energies on frames of two systems (DeePMD-kit's DeepPot, fixture srtab/expected.npz), through
    a checkpoint and frozen programs (C++ and plain Paddle); the total of the atomic virials too."""
    from deepmd_paddle import DeepPot
    from deepmd_paddle.io.frozen import freeze

    ref = np.load(SRTAB / "expected.npz")
    t, result = _srtab_trainer(tmp_path)
    assert not t.fused  # autograd training with use_srtab
    prefixes = [str(tmp_path / "frozen"), str(tmp_path / "portable")]
    freeze(result["checkpoint"], prefixes[0])
    freeze(result["checkpoint"], prefixes[1], portable=True)
    for source in (result["checkpoint"], *prefixes):
        dp = DeepPot(source)
        for sysname in ("sys_a", "sys_b"):
            r = {k: ref[f"{sysname}_{k}"] for k in ("coord", "box", "atype", "energy", "force", "virial",
                                                    "atom_energy", "atom_virial")}
            e, f, v, ae, av = dp.eval(r["coord"], r["box"], r["atype"], atomic=True)
            assert np.abs(r["energy"]).max() > 1 and np.abs(r["force"]).max() > 1e-3
            for name, x, y in (("energy", e, r["energy"]), ("force", f, r["force"]), ("virial", v, r["virial"]),
                               ("atom_energy", ae, r["atom_energy"]),
                               ("atom_virial sum", av.sum(1), r["atom_virial"].sum(1))):
                np.testing.assert_allclose(np.asarray(x).reshape(np.shape(y)), y, rtol=1e-10,
                                           atol=1e-10 * np.abs(y).max(), err_msg=f"{source} {sysname} {name}")


def test_srtab_blend_switches_between_table_and_model(tmp_path):
    """l_i = 1 (s_i below sw_rmin) gives the table's energy plus the bias alone, l_i = 0 (above
    sw_rmax) the model's alone; forces are minus the energy's finite-difference gradient."""
    from conftest import small_model_config
    from deepmd_paddle.model import EnergyModel

    coord, atype, cell = random_system(12, 1, "ortho", seed=2, min_dist=0.9)
    outs = {}
    for key, (lo, hi) in {"table": (10.0, 11.0), "model": (0.01, 0.02), "mixed": (1.0, 2.5)}.items():
        cfg = small_model_config(rcut=3.5)
        cfg.update(use_srtab=str(SRTAB / "table_tail.txt"), smin_alpha=0.3, sw_rmin=lo, sw_rmax=hi)
        m = EnergyModel.from_config(cfg)
        m.fitting.set_bias([-1.0, -0.5])
        outs[key] = m(*to_tensors(coord, atype, cell))
        if key == "mixed":
            h, f = 1e-5, outs[key]["force"].numpy()
            for i, d in [(0, 0), (3, 2), (7, 1)]:
                es = []
                for s in (h, -h):
                    c = coord.copy()
                    c[0, i, d] += s
                    es.append(m(*to_tensors(c, atype, cell))["energy"].numpy()[0, 0])
                assert f[0, i, d] == pytest.approx(-(es[0] - es[1]) / (2 * h), rel=1e-6, abs=1e-8)
    m.srtab = None
    plain = m(*to_tensors(coord, atype, cell))["atom_energy"].numpy()
    np.testing.assert_allclose(outs["model"]["atom_energy"].numpy(), plain, rtol=1e-13)
    table = outs["table"]["atom_energy"].numpy().ravel() - np.where(atype.ravel() == 0, -1.0, -0.5)
    assert np.abs(table).max() > 1e-3 and not np.allclose(table, plain.ravel())
    mixed = outs["mixed"]["atom_energy"].numpy().ravel()
    assert not np.allclose(mixed, plain.ravel())
    assert not np.allclose(mixed, outs["table"]["atom_energy"].numpy().ravel())


def test_srtab_errors_name_the_problem(tmp_path):
    from conftest import small_model_config
    from deepmd_paddle.model import EnergyModel

    cfg = small_model_config(rcut=3.5)
    cfg.update(use_srtab=str(SRTAB / "table_tail.txt"), smin_alpha=0.3)
    with pytest.raises(ValueError, match=r"model/use_srtab needs \['sw_rmin', 'sw_rmax'\]"):
        EnergyModel.from_config(cfg)
    (tmp_path / "three.txt").write_text("0.5 1 2 3 4 5 6\n0.6 1 2 3 4 5 6\n")
    cfg.update(use_srtab=str(tmp_path / "three.txt"), sw_rmin=1.0, sw_rmax=2.0)
    with pytest.raises(ValueError, match="columns for 3 types, the model has 2"):
        EnergyModel.from_config(cfg)
    cfg.update(use_srtab=str(SRTAB / "table_tail.txt"))
    m = EnergyModel.from_config(cfg)
    coord = np.array([[[0.0, 0.0, 0.0], [0.3, 0.0, 0.0], [2.0, 2.0, 2.0]]])
    with pytest.raises(ValueError, match="closer .* than the pair table's first distance 0.5"):
        m(*to_tensors(coord, np.array([[0, 1, 1]]), None))
    with pytest.raises(NotImplementedError, match="no DeePMD-kit .dp form"):
        m.serialize()
