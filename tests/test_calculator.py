"""The ASE calculator (deepmd_paddle.calculator.DP): energies, forces and stress against
DeepPot and against finite differences of the energy (positions, strain)."""
import numpy as np
import pytest

from conftest import REFERENCE, needs_shared

ase = pytest.importorskip("ase")
from ase import Atoms  # noqa: E402
from ase.calculators.calculator import PropertyNotImplementedError  # noqa: E402

from deepmd_paddle.calculator import DP  # noqa: E402
from deepmd_paddle.infer import DeepPot  # noqa: E402

pytestmark = needs_shared
MODEL = REFERENCE / "water_se_e2_a_two_side.dp"


@pytest.fixture(scope="module")
def dp():
    return DeepPot(str(MODEL))


@pytest.fixture(scope="module")
def water():
    """Frame 0 of the reference: 64 H2O, with a slightly triclinic cell (exercises every component)."""
    ref = np.load(REFERENCE / "water_se_e2_a_two_side_ref.npz")
    cell = ref["cell"][0].reshape(3, 3) + np.array([[0, 0, 0], [0.4, 0, 0], [-0.3, 0.2, 0]])
    symbols = np.array(["O", "H"])[ref["atype"]]
    return Atoms(symbols=list(symbols), positions=ref["coord"][0], cell=cell, pbc=True)


def test_matches_deeppot(dp, water):
    atoms = water.copy()
    atoms.calc = DP(dp)
    e, f, v = dp.eval(atoms.positions[None], atoms.cell.array.reshape(1, 9), atoms.get_chemical_symbols())
    assert atoms.get_potential_energy() == pytest.approx(e[0, 0], rel=1e-14)
    assert atoms.get_potential_energy(force_consistent=True) == pytest.approx(e[0, 0], rel=1e-14)
    np.testing.assert_allclose(atoms.get_forces(), f[0], rtol=1e-12, atol=1e-12)
    s = -v[0].reshape(3, 3) / atoms.get_volume()
    want = [s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]]  # ASE's Voigt order
    np.testing.assert_allclose(atoms.get_stress(), want, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(atoms.get_stress(voigt=False), s, rtol=1e-12, atol=1e-14)


def test_stress_is_strain_derivative(dp, water):
    """stress_ab = (1/V) dE/d(eps_ab) for a symmetric strain applied to cell and positions."""
    atoms = water.copy()
    atoms.calc = DP(dp)
    stress = atoms.get_stress(voigt=False)
    cell0, pos0, vol = atoms.cell.array.copy(), atoms.positions.copy(), atoms.get_volume()
    h = 1e-5
    fd = np.zeros((3, 3))
    for a in range(3):
        for b in range(a, 3):
            energies = []
            for sign in (1, -1):
                eps = np.eye(3)
                eps[a, b] += sign * h / (1 if a == b else 2)
                eps[b, a] += 0 if a == b else sign * h / 2
                atoms.set_cell(cell0 @ eps, scale_atoms=False)
                atoms.positions = pos0 @ eps
                energies.append(atoms.get_potential_energy())
            fd[a, b] = fd[b, a] = (energies[0] - energies[1]) / (2 * h) / vol
    np.testing.assert_allclose(stress, fd, rtol=1e-5, atol=1e-5 * np.abs(stress).max())


def test_forces_are_energy_derivative(dp, water):
    atoms = water.copy()
    atoms.calc = DP(dp)
    forces = atoms.get_forces()
    h = 1e-4  # E ~ 3e4 eV: rounding in E limits the difference quotient to ~1e-7 eV/A
    for i, k in [(0, 0), (1, 2), (100, 1)]:
        energies = []
        for sign in (1, -1):
            moved = atoms.copy()
            moved.calc = atoms.calc
            moved.positions[i, k] += sign * h
            energies.append(moved.get_potential_energy())
        assert -(energies[0] - energies[1]) / (2 * h) == pytest.approx(forces[i, k], rel=1e-6, abs=1e-6)


def test_open_system_type_dict_and_errors(dp, water):
    cluster = water[list(range(10)) + list(range(64, 84))]  # 10 O, 20 H
    cluster.pbc = False
    cluster.calc = DP(dp)
    e, f, _ = dp.eval(cluster.positions[None], None, cluster.get_chemical_symbols())
    assert cluster.get_potential_energy() == pytest.approx(e[0, 0], rel=1e-14)
    np.testing.assert_allclose(cluster.get_forces(), f[0], rtol=1e-12, atol=1e-12)
    with pytest.raises(PropertyNotImplementedError, match="non-periodic"):
        cluster.get_stress()
    # elements named differently in the structure: mapped through type_dict
    renamed = cluster.copy()
    renamed.set_chemical_symbols(["S" if s == "O" else "Li" for s in cluster.get_chemical_symbols()])
    renamed.calc = DP(dp, type_dict={"S": 0, "Li": 1})
    assert renamed.get_potential_energy() == pytest.approx(e[0, 0], rel=1e-14)
    renamed.calc = DP(dp)
    with pytest.raises(ValueError, match=r"element\(s\) \['Li', 'S'\] are not in the model's type map"):
        renamed.get_potential_energy()
    with pytest.raises(ValueError, match="type indices must be in 0..1"):
        DP(dp, type_dict={"O": 0, "H": 2})
    slab = water.copy()
    slab.pbc = [True, True, False]
    slab.calc = DP(dp)
    with pytest.raises(ValueError, match="fully periodic or a fully open"):
        slab.get_potential_energy()


def test_from_path():
    calc = DP(str(MODEL))
    assert calc.dp.get_type_map() == ["O", "H"] and "stress" in calc.implemented_properties
