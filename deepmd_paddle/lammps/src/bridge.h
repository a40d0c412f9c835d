// The C interface between the LAMMPS pair style (pair_deepmd_paddle.cpp, no Python symbols)
// and the bridge library (bridge.cpp, Python C API). The pair style loads the bridge with
// dlopen once a Python interpreter is in the process, and looks these functions up by name.
#ifndef DPP_LAMMPS_BRIDGE_H
#define DPP_LAMMPS_BRIDGE_H

#include <cstdint>

extern "C" {

// Start an interpreter unless one runs already (LAMMPS driven from Python); 0 on success.
// python_exe: the interpreter whose environment (venv, site-packages) to use.
typedef int (*dpp_init_t)(const char *python_exe, char *err, int errlen);

// Load a model and map LAMMPS types 1..ntypes to model types. elements: ntypes element names
// separated by spaces. Returns an opaque handle or nullptr (message in err). On success fills
// rcut, nsel (number of neighbour types), sel[0..nsel) (at most max_sel), type_map_out[0..ntypes).
typedef void *(*dpp_model_new_t)(const char *path, const char *elements, double *rcut, int *nsel,
                                 int *sel, int max_sel, int *type_map_out, char *err, int errlen);

// One evaluation (see deepmd_paddle.lammps.adapter.LammpsModel.compute). out[0] = energy of the
// local atoms, out[1..6] = their virial in LAMMPS's order xx yy zz xy xz yz (DeePMD-kit's sign =
// LAMMPS's; the adapter maps the model's 3 x 3). Forces, and
// eatom/vatom when not null, are ADDED to the arrays. 0 on success.
typedef int (*dpp_model_compute_t)(void *model, int nlocal, int nall, const double *x,
                                   const int32_t *type, const int32_t *nlist, int nnei, double *f,
                                   double *eatom, double *vatom, double *out, char *err, int errlen);

typedef void (*dpp_model_free_t)(void *model);
}

#endif
