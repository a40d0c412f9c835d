"""The labeller of DP-GEN's ``custom`` first-principles style: ASE's EMT instead of DFT.

DP-GEN writes each candidate as ``fp_params.input_fn`` in ``fp_params.input_fmt`` (here
``input.poscar``, ``vasp/poscar``), runs ``fp_command`` in the task folder and reads
``fp_params.output_fn`` in ``fp_params.output_fmt`` (here ``labels``, ``deepmd/npy``; not ``output``: DP-GEN names the command's log so) with dpdata.
This script is that command: energy (eV), forces (eV/A) and virial (eV) of every frame by EMT.

    python emt_label.py [INPUT [OUTPUT]]     (defaults: input.poscar labels)
"""
import sys

import dpdata
import numpy as np
from ase.calculators.emt import EMT


def label(system: dpdata.System) -> dpdata.LabeledSystem:
    frames = []
    for atoms in system.to("ase/structure"):
        atoms.calc = EMT()
        energy = atoms.get_potential_energy()
        frames.append({
            "energies": np.array([energy]),
            "forces": atoms.get_forces()[None],
            "virials": (-atoms.get_volume() * atoms.get_stress(voigt=False))[None],  # DeePMD-kit's sign
        })
    data = dict(system.data)
    for key in ("energies", "forces", "virials"):
        data[key] = np.concatenate([f[key] for f in frames])
    return dpdata.LabeledSystem(data=data)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    src = argv[0] if argv else "input.poscar"
    dst = argv[1] if len(argv) > 1 else "labels"
    labelled = label(dpdata.System(src, fmt="vasp/poscar"))
    labelled.to("deepmd/npy", dst)
    print(f"{dst}: {len(labelled)} frame(s), {labelled.get_natoms()} atoms, "
          f"energy {labelled['energies'][0]:.6f} eV")


if __name__ == "__main__":
    main()
