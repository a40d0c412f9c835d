// The C interface between the LAMMPS pair style (pair_deepmd_paddle.cpp, no Python symbols)
// and the bridge library (bridge.cpp, Python C API). The pair style loads the bridge with
// dlopen once a Python interpreter is in the process, and looks these functions up by name.
// Every call returns 0 on success, 1 on an error (message in err); err holds a warning after 2.
#ifndef DPP_LAMMPS_BRIDGE_H
#define DPP_LAMMPS_BRIDGE_H

#include <cstdint>

extern "C" {

// Start an interpreter unless one runs already (LAMMPS driven from Python).
// python_exe: the interpreter whose environment (venv, site-packages) to use.
typedef int (*dpp_init_t)(const char *python_exe, char *err, int errlen);

// Load the models of a pair_style (deepmd_paddle.lammps.adapter.LammpsModel): spec is a JSON
// object (models, keywords, unit factors, MPI rank). Returns an opaque handle or nullptr. Fills
// rcut (model units), nsel and sel[0..nsel) (the largest sel of the models, per type; nsel at
// most max_sel), dim_fparam, and type_map (the element names, space-separated).
typedef void *(*dpp_model_new_t)(const char *spec, double *rcut, int *nsel, int *sel, int max_sel,
                                 int *dim_fparam, char *type_map, int tmlen, char *err, int errlen);

// pair_coeff: names = the arguments after `* *` (space-separated, "" for none) -> map[0..ntypes),
// the model type of each LAMMPS type (-1: NULL). 2 = success with a warning in err.
typedef int (*dpp_model_coeff_t)(void *model, const char *names, int ntypes, int *map, char *err,
                                 int errlen);

// One step (deepmd_paddle.lammps.adapter.LammpsModel.compute). out[0] = energy of the local
// atoms, out[1..6] = their virial (LAMMPS's order xx yy zz xy xz yz and units); forces, and
// eatom/vatom when not null, are ADDED to LAMMPS's arrays. fparam: nfparam values or null.
// devi != 0: every model evaluates; fdevi [nmodels][nall][3] and vdevi [nmodels][9] receive
// their forces and virials in the model's units (the first model still drives LAMMPS).
typedef int (*dpp_model_compute_t)(void *model, int nlocal, int nall, const double *x,
                                   const int32_t *type, const int32_t *nlist, int nnei, double *f,
                                   double *eatom, double *vatom, double *out, const double *fparam,
                                   int nfparam, int devi, double *fdevi, double *vdevi, char *err,
                                   int errlen);

// Rank 0 of a model-deviation step: n atoms with their tags, forces [n][nmodels][3] (complete:
// ghost shares summed on their owners) and virials [nmodels][9] (summed over ranks), in the
// model's units: one row of out_file.
typedef int (*dpp_model_devi_t)(void *model, int64_t step, int n, const int64_t *tags,
                                const double *forces, const double *virials, char *err, int errlen);

typedef void (*dpp_model_free_t)(void *model);
}

#endif
