// Python side of the LAMMPS pair style: calls deepmd_paddle.lammps.adapter through the Python
// C API. Built without linking libpython: its Python symbols resolve against the interpreter
// already in the process (LAMMPS's Python module) or the libpython that pair_deepmd_paddle.cpp
// loads with RTLD_GLOBAL before it loads this library (the lmp executable).
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "bridge.h"

namespace {

void set_err(char *err, int errlen, const std::string &msg) {
  std::snprintf(err, errlen, "%s", msg.c_str());
}

// The pending Python exception as "Type: message" (cleared); GIL held.
std::string fetch_error() {
  PyObject *type = nullptr, *value = nullptr, *tb = nullptr;
  PyErr_Fetch(&type, &value, &tb);
  PyErr_NormalizeException(&type, &value, &tb);
  std::string msg = "unknown Python error";
  if (value) {
    PyObject *s = PyObject_Str(value);
    PyObject *n = type ? PyObject_GetAttrString(type, "__name__") : nullptr;
    if (s && PyUnicode_Check(s)) {
      msg = PyUnicode_AsUTF8(s);
      if (n && PyUnicode_Check(n)) msg = std::string(PyUnicode_AsUTF8(n)) + ": " + msg;
    }
    Py_XDECREF(s);
    Py_XDECREF(n);
  }
  Py_XDECREF(type);
  Py_XDECREF(value);
  Py_XDECREF(tb);
  PyErr_Clear();
  return msg;
}

PyObject *addr(const void *p) { return PyLong_FromVoidPtr(const_cast<void *>(p)); }

}  // namespace

extern "C" {

int dpp_init(const char *python_exe, char *err, int errlen) {
  if (Py_IsInitialized()) return 0;
  PyConfig config;
  PyConfig_InitPythonConfig(&config);
  config.install_signal_handlers = 0;  // LAMMPS and MPI keep their signal handling
  config.parse_argv = 0;
  // program_name = the build environment's python: its pyvenv.cfg and site-packages are used
  PyStatus st = PyConfig_SetBytesString(&config, &config.program_name, python_exe);
  if (!PyStatus_Exception(st)) {
    char *argv[] = {const_cast<char *>("lmp")};
    st = PyConfig_SetBytesArgv(&config, 1, argv);
  }
  if (!PyStatus_Exception(st)) st = Py_InitializeFromConfig(&config);
  PyConfig_Clear(&config);
  if (PyStatus_Exception(st)) {
    set_err(err, errlen, std::string("cannot start Python: ") + (st.err_msg ? st.err_msg : "?"));
    return 1;
  }
  PyEval_SaveThread();  // release the GIL: every call below takes it with PyGILState_Ensure
  return 0;
}

void *dpp_model_new(const char *spec, double *rcut, int *nsel, int *sel, int max_sel, int *dim_fparam,
                    char *type_map, int tmlen, char *err, int errlen) {
  PyGILState_STATE gil = PyGILState_Ensure();
  PyObject *model = nullptr, *info = nullptr;
  PyObject *mod = PyImport_ImportModule("deepmd_paddle.lammps.adapter");
  if (mod) model = PyObject_CallMethod(mod, "LammpsModel", "s", spec);
  if (model) info = PyObject_CallMethod(model, "info", nullptr);
  bool ok = false;
  if (info) {
    // info() -> (rcut, [sel...], dim_fparam, "type map names")
    PyObject *s = PyTuple_GetItem(info, 1);
    *rcut = PyFloat_AsDouble(PyTuple_GetItem(info, 0));
    *nsel = static_cast<int>(PyList_Size(s));
    *dim_fparam = static_cast<int>(PyLong_AsLong(PyTuple_GetItem(info, 2)));
    const char *names = PyUnicode_AsUTF8(PyTuple_GetItem(info, 3));
    if (*nsel > max_sel) {
      set_err(err, errlen, "the model has more neighbour types than the pair style supports");
    } else if (names) {
      for (int t = 0; t < *nsel; ++t) sel[t] = static_cast<int>(PyLong_AsLong(PyList_GetItem(s, t)));
      std::snprintf(type_map, tmlen, "%s", names);
      ok = !PyErr_Occurred();
    }
  }
  if (PyErr_Occurred()) set_err(err, errlen, fetch_error());
  Py_XDECREF(info);
  Py_XDECREF(mod);
  if (!ok) Py_CLEAR(model);
  PyGILState_Release(gil);
  return model;
}

// Calls model.<name>(*args) (args: a new reference, stolen); returns the result or nullptr with
// the message in err. GIL held.
static PyObject *call(void *model, const char *name, PyObject *args, char *err, int errlen) {
  PyObject *res = nullptr;
  if (args) {
    PyObject *meth = PyObject_GetAttrString(static_cast<PyObject *>(model), name);
    if (meth) res = PyObject_CallObject(meth, args);
    Py_XDECREF(meth);
  }
  if (!res) set_err(err, errlen, fetch_error());
  Py_XDECREF(args);
  return res;
}

int dpp_model_coeff(void *model, const char *names, int ntypes, int *map, char *err, int errlen) {
  PyGILState_STATE gil = PyGILState_Ensure();
  // coeff(names, ntypes) -> ([model type of each LAMMPS type], "warning or empty")
  PyObject *res = call(model, "coeff", Py_BuildValue("(si)", names, ntypes), err, errlen);
  int rc = 1;
  if (res) {
    PyObject *m = PyTuple_GetItem(res, 0);
    for (int t = 0; t < ntypes && t < PyList_Size(m); ++t)
      map[t] = static_cast<int>(PyLong_AsLong(PyList_GetItem(m, t)));
    const char *warn = PyUnicode_AsUTF8(PyTuple_GetItem(res, 1));
    if (PyErr_Occurred()) {
      set_err(err, errlen, fetch_error());
    } else {
      rc = warn && warn[0] ? 2 : 0;
      if (rc == 2) set_err(err, errlen, warn);
    }
    Py_DECREF(res);
  }
  PyGILState_Release(gil);
  return rc;
}

int dpp_model_compute(void *model, int nlocal, int nall, const double *x, const int32_t *type,
                      const int32_t *nlist, int nnei, double *f, double *eatom, double *vatom,
                      double *out, const double *fparam, int nfparam, int devi, double *fdevi,
                      double *vdevi, char *err, int errlen) {
  PyGILState_STATE gil = PyGILState_Ensure();
  PyObject *args = Py_BuildValue("(iiNNNiNNNNNiiNN)", nlocal, nall, addr(x), addr(type), addr(nlist), nnei,
                                 addr(f), addr(eatom), addr(vatom), addr(out), addr(fparam), nfparam, devi,
                                 addr(fdevi), addr(vdevi));
  PyObject *res = call(model, "compute", args, err, errlen);
  Py_XDECREF(res);
  PyGILState_Release(gil);
  return res ? 0 : 1;
}

int dpp_model_devi(void *model, int64_t step, int n, const int64_t *tags, const double *forces,
                   const double *virials, char *err, int errlen) {
  PyGILState_STATE gil = PyGILState_Ensure();
  PyObject *args = Py_BuildValue("(LiNNN)", static_cast<long long>(step), n, addr(tags), addr(forces),
                                 addr(virials));
  PyObject *res = call(model, "write_devi", args, err, errlen);
  Py_XDECREF(res);
  PyGILState_Release(gil);
  return res ? 0 : 1;
}

void dpp_model_free(void *model) {
  if (!model || !Py_IsInitialized()) return;
  PyGILState_STATE gil = PyGILState_Ensure();
  Py_DECREF(static_cast<PyObject *>(model));
  PyGILState_Release(gil);
}
}
