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

void *dpp_model_new(const char *path, const char *elements, double *rcut, int *nsel, int *sel,
                    int max_sel, int *type_map_out, char *err, int errlen) {
  PyGILState_STATE gil = PyGILState_Ensure();
  PyObject *model = nullptr, *info = nullptr;
  PyObject *mod = PyImport_ImportModule("deepmd_paddle.lammps.adapter");
  if (mod) model = PyObject_CallMethod(mod, "LammpsModel", "ss", path, elements);
  if (model) info = PyObject_CallMethod(model, "info", nullptr);
  bool ok = false;
  if (info) {
    // info() -> (rcut, [sel...], [model type of LAMMPS type 1, 2, ...])
    PyObject *s = PyTuple_GetItem(info, 1), *m = PyTuple_GetItem(info, 2);
    *rcut = PyFloat_AsDouble(PyTuple_GetItem(info, 0));
    *nsel = static_cast<int>(PyList_Size(s));
    if (*nsel > max_sel) {
      set_err(err, errlen, "the model has more neighbour types than the pair style supports");
    } else {
      for (int t = 0; t < *nsel; ++t) sel[t] = static_cast<int>(PyLong_AsLong(PyList_GetItem(s, t)));
      for (Py_ssize_t t = 0; t < PyList_Size(m); ++t)
        type_map_out[t] = static_cast<int>(PyLong_AsLong(PyList_GetItem(m, t)));
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

int dpp_model_compute(void *model, int nlocal, int nall, const double *x, const int32_t *type,
                      const int32_t *nlist, int nnei, double *f, double *eatom, double *vatom,
                      double *out, char *err, int errlen) {
  PyGILState_STATE gil = PyGILState_Ensure();
  PyObject *args = Py_BuildValue("(iiNNNiNNNN)", nlocal, nall, addr(x), addr(type), addr(nlist),
                                 nnei, addr(f), addr(eatom), addr(vatom), addr(out));
  PyObject *res = nullptr;
  if (args) {
    PyObject *meth = PyObject_GetAttrString(static_cast<PyObject *>(model), "compute");
    if (meth) res = PyObject_CallObject(meth, args);
    Py_XDECREF(meth);
  }
  int rc = 0;
  if (!res) {
    set_err(err, errlen, fetch_error());
    rc = 1;
  }
  Py_XDECREF(res);
  Py_XDECREF(args);
  PyGILState_Release(gil);
  return rc;
}

void dpp_model_free(void *model) {
  if (!model || !Py_IsInitialized()) return;
  PyGILState_STATE gil = PyGILState_Ensure();
  Py_DECREF(static_cast<PyObject *>(model));
  PyGILState_Release(gil);
}
}
