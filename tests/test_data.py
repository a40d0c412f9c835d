"""Data: systems, remapping, bad data, batching rules, statistics, the demo generator."""
import os

import numpy as np
import pytest

from conftest import WATER, needs_shared
from deepmd_paddle.data.batch import DataSet, batch_sizes, system_probs
from deepmd_paddle.data.demo import make_demo, write_system
from deepmd_paddle.data.stats import energy_bias, env_mat_stat, neighbor_stat, resolve_sel
from deepmd_paddle.data.system import DataError, expand_systems, load_system


@pytest.fixture(scope="module")
def emt(tmp_path_factory):
    """A small EMT Cu/Ag data set (train and valid systems)."""
    return make_demo(str(tmp_path_factory.mktemp("emt")), seed=5, segments=1, valid_segments=1,
                     frames_per_segment=4, every=2, n_ag=4)


def _toy_system(path, types=(0, 1, 1), names=("O", "H"), nframes=3, nan=False):
    rng = np.random.default_rng(0)
    n = len(types)
    arrays = {"coord": rng.uniform(0, 5, (nframes, n * 3)), "box": np.tile(np.eye(3).reshape(9) * 5, (nframes, 1)),
              "energy": rng.normal(size=nframes), "force": rng.normal(size=(nframes, n * 3))}
    if nan:
        arrays["force"][1, 2] = np.nan
    write_system(str(path), arrays, np.array(types), list(names))
    return str(path)


# ----------------------------------------------------------------------------- batching rules
def test_batch_size_auto_arithmetic():
    # auto:N -> smallest b with b * natoms >= N; "auto" is "auto:32"
    assert batch_sizes("auto", [192, 5, 32, 33, 31]) == [1, 7, 1, 1, 2]
    assert batch_sizes("auto:100", [192, 30, 7, 50]) == [1, 4, 15, 2]
    assert batch_sizes(3, [10, 20]) == [3, 3]
    assert batch_sizes([2, 5], [10, 20]) == [2, 5]
    # max:N -> largest b with b * natoms <= N, at least 1 (DeePMD-kit); filter:N the same on the systems kept
    assert batch_sizes("max:20", [6, 9, 24, 20, 21]) == [3, 2, 1, 1, 1]
    assert batch_sizes("filter:12", [6, 9]) == [2, 1]
    for bad in ("mixed:3", "max", "max:0", "filter:x"):
        with pytest.raises(DataError, match="allowed"):
            batch_sizes(bad, [10])


def test_system_probs():
    np.testing.assert_allclose(system_probs("prob_sys_size", None, [80, 160, 80]), [0.25, 0.5, 0.25])
    np.testing.assert_allclose(system_probs("prob_uniform", None, [80, 160, 80]), [1 / 3] * 3)
    # two blocks with equal weight; inside a block in proportion to size
    np.testing.assert_allclose(system_probs("prob_sys_size;0:1:0.5;1:3:0.5", None, [80, 160, 80]),
                               [0.5, 0.5 * 2 / 3, 0.5 / 3])
    np.testing.assert_allclose(system_probs("prob_sys_size", [1, 3], [5, 5]), [0.25, 0.75])


def test_dataset_sampling_proportional_and_resumable(tmp_path):
    # 3-atom system with 4 frames, 4-atom system with 12: 2 and 6 batches of 2
    systems = [load_system(_toy_system(tmp_path / f"s{n}", types=(0,) + (1,) * (n - 1), nframes=f), ["O", "H"])
               for n, f in ((3, 4), (4, 12))]
    data = DataSet(systems, batch_size=2, seed=3)
    assert data.nbatches == [2, 6]
    first = np.mean([data.next_batch()["natoms"] == 3 for _ in range(1000)])
    assert abs(first - 0.25) < 0.04
    state = data.state_dict()
    a = [data.next_batch()["coord"] for _ in range(5)]
    data.load_state_dict(state)
    b = [data.next_batch()["coord"] for _ in range(5)]
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


# ----------------------------------------------------------------------------- systems
@needs_shared
def test_water_system_and_type_remap():
    s = load_system(str(WATER / "data_1"), ["O", "H"])
    assert (s.natoms, s.nframes) == (192, 160)
    assert s.labels["force"].shape == (160, 192, 3) and s.found["energy"].all() and not s.found["virial"].any()
    swapped = load_system(str(WATER / "data_1"), ["H", "O", "Cu"])
    np.testing.assert_array_equal(swapped.atype, 1 - s.atype)
    np.testing.assert_array_equal(swapped.coord, s.coord)


def test_type_absent_from_type_map(tmp_path):
    path = _toy_system(tmp_path / "s", names=("O", "Cl"))
    with pytest.raises(DataError, match=r"\['Cl'\] are not in the model's type_map.*allowed: \['O', 'H'\]"):
        load_system(path, ["O", "H"])


def test_nan_label_names_the_file(tmp_path):
    path = _toy_system(tmp_path / "s", nan=True)
    with pytest.raises(DataError, match=r"force\.npy: 1 NaN/inf values, first in frame 1"):
        load_system(path, ["O", "H"])


def test_missing_system_names_the_key(tmp_path):
    with pytest.raises(DataError, match=r"training/training_data/systems: 'nowhere' does not exist"):
        expand_systems(["nowhere"], str(tmp_path), None, "training/training_data/systems")
    os.makedirs(tmp_path / "empty")
    with pytest.raises(DataError, match="no DeePMD system"):
        expand_systems("empty", str(tmp_path), None, "k")


def test_expand_systems_folder_and_glob(tmp_path):
    for name in ("a/s1", "a/s2", "b"):
        _toy_system(tmp_path / name)
    assert expand_systems("a", str(tmp_path), None, "k") == [str(tmp_path / "a/s1"), str(tmp_path / "a/s2")]
    assert expand_systems(["a/s*", "b"], str(tmp_path), None, "k") == [
        str(tmp_path / "a/s1"), str(tmp_path / "a/s2"), str(tmp_path / "b")]


def test_dpdata_format(emt, tmp_path):
    import dpdata

    ref = load_system(emt["valid"], ["Ag", "Cu"])
    dpdata.LabeledSystem(emt["valid"], fmt="deepmd/npy").to("deepmd/raw", str(tmp_path / "raw"))
    for fmt, path in (("deepmd/raw", tmp_path / "raw"), ("deepmd/npy", emt["valid"])):
        s = load_system(str(path), ["Ag", "Cu"], fmt=fmt)
        np.testing.assert_array_equal(s.atype, ref.atype)
        for k in ("energy", "force", "virial"):
            np.testing.assert_allclose(s.labels[k], ref.labels[k], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(s.box, ref.box, rtol=1e-12)


def test_demo_virial_is_minus_volume_times_stress(emt):
    from ase import Atoms
    from ase.calculators.emt import EMT

    s = load_system(emt["train"], ["Cu", "Ag"])
    assert s.natoms == 32 and s.type_counts(2).tolist() == [28, 4] and s.found["virial"].all()
    atoms = Atoms(symbols=[["Cu", "Ag"][t] for t in s.atype], positions=s.coord[2], cell=s.box[2].reshape(3, 3),
                  pbc=True, calculator=EMT())
    np.testing.assert_allclose(s.labels["virial"][2], -atoms.get_volume() * atoms.get_stress(voigt=False).ravel(),
                               atol=1e-10)
    np.testing.assert_allclose(s.labels["force"][2], atoms.get_forces(), atol=1e-10)


# ----------------------------------------------------------------------------- statistics
def test_energy_bias_matches_lstsq():
    rng = np.random.default_rng(1)
    counts = rng.integers(0, 20, (40, 3))
    truth = np.array([-3.1, -1.7, -0.2])
    energy = counts @ truth + rng.normal(0, 0.05, 40)
    bias = energy_bias(energy, counts)
    np.testing.assert_allclose(bias, np.linalg.lstsq(counts.astype(float), energy, rcond=None)[0], rtol=1e-12)
    np.testing.assert_allclose(bias, truth, atol=0.02)


def _brute_force_neighbors(coord, box, atype, rcut, ntypes):
    """Neighbour counts per type and the smallest distance, over 3x3x3 images (box > rcut)."""
    cell = box.reshape(3, 3)
    shifts = np.array([[i, j, k] for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)]) @ cell
    d = np.linalg.norm(coord[None, :, None] + shifts[None, None] - coord[:, None, None], axis=-1)  # i, j, image
    d[np.arange(len(coord)), np.arange(len(coord)), 13] = np.inf  # the atom itself
    within = d < rcut
    counts = [within[:, atype == t].sum(axis=(1, 2)).max() for t in range(ntypes)]
    return d.min(), np.array(counts)


def test_neighbor_stat_and_auto_sel(emt):
    s = load_system(emt["valid"], ["Cu", "Ag"])
    min_dist, max_nbor = neighbor_stat([s], 4.0, ["Cu", "Ag"])
    ref = [_brute_force_neighbors(c, b, s.atype, 4.0, 2) for c, b in zip(s.coord, s.box)]
    assert min_dist == pytest.approx(min(r[0] for r in ref), abs=1e-10)
    np.testing.assert_array_equal(max_nbor, np.max([r[1] for r in ref], axis=0))
    # DeePMD-kit: "auto" = "auto:1.1", int(max * factor) rounded up to a multiple of 4
    assert resolve_sel("auto", [s], 4.0, ["Cu", "Ag"]) == [4 * ((int(m * 1.1) + 3) // 4) for m in max_nbor]
    assert resolve_sel("auto:1.5", [s], 4.0, ["Cu", "Ag"]) == [4 * ((int(m * 1.5) + 3) // 4) for m in max_nbor]
    assert resolve_sel([5, 6], [s], 4.0, ["Cu", "Ag"]) == [5, 6]


def test_env_mat_stat_formula(emt):
    import paddle
    from deepmd_paddle import config
    from deepmd_paddle.model import EnergyModel

    s = load_system(emt["valid"], ["Cu", "Ag", "Au"])  # Au: a type without atoms
    model = EnergyModel.from_config(config.normalize_model({
        "type_map": ["Cu", "Ag", "Au"],
        "descriptor": {"type": "se_e2_a", "sel": [1, 1, 1], "rcut": 4.0, "rcut_smth": 0.0, "neuron": [1],
                       "axis_neuron": 1, "precision": "float64", "seed": 0},
        "fitting_net": {"neuron": [1], "precision": "float64", "seed": 0}}))
    frames = [np.array([0, 3, 5])]
    davg, dstd = env_mat_stat(model.descriptor, [s], frames, protect=1e-2)
    env = model.descriptor.env_mat_raw(paddle.to_tensor(s.coord[frames[0]]),
                                       paddle.to_tensor(np.tile(s.atype, (3, 1))), paddle.to_tensor(s.box[frames[0]]))[0]
    env = env.numpy()
    for t in (0, 1):
        rows = env[:, s.atype == t].reshape(-1, 4)  # every slot of every type-t atom, padded ones included
        np.testing.assert_allclose(davg[t, :, 0], rows[:, 0].mean(), rtol=1e-12)
        assert (davg[t, :, 1:] == 0).all()
        np.testing.assert_allclose(dstd[t, :, 0], max(rows[:, 0].std(), 1e-2), rtol=1e-10)
        np.testing.assert_allclose(dstd[t, :, 1:], max(rows[:, 1:].std(), 1e-2), rtol=1e-10)
    np.testing.assert_array_equal(davg[2], 0.0)
    np.testing.assert_allclose(dstd[2], 1 / 4.0)
