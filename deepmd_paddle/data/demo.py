"""The embedded demo: FCC copper labelled by ASE's EMT, written as DeePMD npy systems.

Frames come from Langevin MD (2 fs steps) of a 32-atom FCC cell at 300, 600 and 900 K
(``n_ag`` > 0 puts that many Ag atoms on random sites: the tests use it for a two-type set).
Each trajectory segment starts from the perfect lattice under a fresh random strain (up to
+-2 % per component), so the stress, hence the virial, varies between segments.
Labels: energy (eV), forces (eV/A) and the virial ``-V * stress`` (eV, DeePMD-kit's sign, ASE's
stress). Validation segments are separate trajectories, never frames of the training ones.
Everything follows from ``seed``: the same call writes the same numbers.
"""
from __future__ import annotations

import os
import warnings

import numpy as np

TYPE_MAP = ["Cu", "Ag"]  # the names in type_map.raw; the demo model's type_map is ["Cu"]
TEMPERATURES = (300.0, 600.0, 900.0)


def demo_config(train: str = "data/train", valid: str = "data/valid") -> dict:
    """The demo's input (DeePMD-kit keys); ``configs/demo.json`` is this with its comments."""
    return {
        "model": {
            "type_map": ["Cu"],
            "descriptor": {"type": "se_e2_a", "sel": "auto", "rcut": 5.5, "rcut_smth": 2.0,
                           "neuron": [8, 16, 32], "axis_neuron": 8, "type_one_side": True, "resnet_dt": False,
                           "precision": "float64", "seed": 1},
            "fitting_net": {"neuron": [64, 64, 64], "resnet_dt": True, "precision": "float64", "seed": 1},
        },
        "learning_rate": {"type": "exp", "start_lr": 4e-3, "stop_lr": 1e-5, "decay_steps": 100},
        "loss": {"type": "ener", "start_pref_e": 0.02, "limit_pref_e": 1, "start_pref_f": 1000, "limit_pref_f": 1,
                 "start_pref_v": 0.02, "limit_pref_v": 1},
        "training": {
            "training_data": {"systems": [train], "batch_size": 1},
            "validation_data": {"systems": [valid], "batch_size": 4, "numb_btch": 2},
            "numb_steps": 1500, "seed": 1, "disp_file": "lcurve.out", "disp_freq": 100, "save_freq": 500,
            "save_ckpt": "model.ckpt", "max_ckpt_keep": 2,
        },
    }


def _md_segment(rng, temperature: float, nframes: int, every: int, n_ag: int):
    """One strained, thermalised trajectory; returns coord, box, energy, force, virial, types."""
    from ase.build import bulk

    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2))
    symbols = np.array(["Cu"] * len(atoms))
    symbols[rng.choice(len(atoms), n_ag, replace=False)] = "Ag"
    atoms.set_chemical_symbols(symbols.tolist())
    order = np.argsort([TYPE_MAP.index(s) for s in symbols], kind="stable")  # Cu first, then Ag
    atoms = atoms[order]
    return label_md(atoms, rng, temperature, nframes, every, TYPE_MAP)


def label_md(atoms, rng, temperature: float, nframes: int, every: int, type_map, max_strain: float = 0.02):
    """Strain ``atoms`` at random (up to ``max_strain`` per component), run EMT Langevin MD and
    return (arrays coord/box/energy/force/virial, types by ``type_map``)."""
    from ase import units
    from ase.calculators.emt import EMT
    from ase.md.langevin import Langevin

    strain = rng.uniform(-max_strain, max_strain, (3, 3))
    atoms.set_cell(atoms.cell[:] @ (np.eye(3) + (strain + strain.T) / 2), scale_atoms=True)
    atoms.positions += rng.normal(0.0, 0.05, atoms.positions.shape)
    masses = atoms.get_masses()[:, None]
    p = rng.normal(size=(len(atoms), 3)) * np.sqrt(masses * units.kB * temperature)
    atoms.set_momenta(p - p.mean(0) * masses / masses.mean())
    atoms.calc = EMT()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dyn = Langevin(atoms, timestep=2 * units.fs, temperature_K=temperature, friction=0.02, fixcm=False, rng=rng)
    dyn.run(10 * every)  # equilibrate
    out = {k: [] for k in ("coord", "box", "energy", "force", "virial")}
    for _ in range(nframes):
        dyn.run(every)
        out["coord"].append(atoms.get_positions().reshape(-1))
        out["box"].append(atoms.cell[:].reshape(-1))
        out["energy"].append(atoms.get_potential_energy())
        out["force"].append(atoms.get_forces().reshape(-1))
        out["virial"].append((-atoms.get_volume() * atoms.get_stress(voigt=False)).reshape(-1))
    types = np.array([type_map.index(s) for s in atoms.get_chemical_symbols()])
    return {k: np.array(v) for k, v in out.items()}, types


def write_system(path: str, arrays: dict, types: np.ndarray, type_map: list[str]) -> None:
    """A DeePMD npy system with one set."""
    os.makedirs(os.path.join(path, "set.000"), exist_ok=True)
    np.savetxt(os.path.join(path, "type.raw"), types, fmt="%d")
    with open(os.path.join(path, "type_map.raw"), "w") as f:
        f.write("\n".join(type_map) + "\n")
    for k, v in arrays.items():
        np.save(os.path.join(path, "set.000", f"{k}.npy"), v)


def make_demo(outdir: str, seed: int = 2024, segments: int = 6, valid_segments: int = 1,
              frames_per_segment: int = 20, every: int = 5, n_ag: int = 0) -> dict:
    """Write ``outdir/train`` and ``outdir/valid``; returns their paths and frame counts."""
    rng = np.random.default_rng(seed)
    parts = {"train": [], "valid": []}
    for temperature in TEMPERATURES:
        for name, count in (("train", segments), ("valid", valid_segments)):
            for _ in range(count):
                parts[name].append(_md_segment(rng, temperature, frames_per_segment, every, n_ag))
    out = {}
    for name, segs in parts.items():
        arrays = {k: np.concatenate([s[0][k] for s in segs]) for k in segs[0][0]}
        # with Ag, its sites differ between segments, but atoms are ordered Cu first, so types agree
        types = segs[0][1]
        path = os.path.join(outdir, name)
        write_system(path, arrays, types, TYPE_MAP)
        out[name] = path
        out[f"n_{name}"] = len(arrays["energy"])
    return out
