// Loads the bridge library (bridge.cpp) into the process of the pair style, after making sure a
// Python interpreter is there: the lmp executable has none, so the libpython of the environment
// that built the plugin is loaded first (RTLD_GLOBAL); under LAMMPS's Python module the running
// interpreter's symbols are already in the process.
#ifndef DPP_LAMMPS_BRIDGE_LOADER_H
#define DPP_LAMMPS_BRIDGE_LOADER_H

#include <dlfcn.h>

#include <cstdio>

#include <string>

#include "bridge.h"

namespace dpp_lammps {

struct Bridge {
  dpp_init_t init = nullptr;
  dpp_model_new_t model_new = nullptr;
  dpp_model_coeff_t coeff = nullptr;
  dpp_model_compute_t compute = nullptr;
  dpp_model_devi_t devi = nullptr;
  dpp_model_free_t model_free = nullptr;
};

inline std::string plugin_dir()
{
  Dl_info info;
  if (dladdr(reinterpret_cast<void *>(&plugin_dir), &info) == 0 || !info.dli_fname) return ".";
  std::string path = info.dli_fname;
  const auto slash = path.rfind('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

// "" or an error message. libpython: the build environment's shared libpython ("" when none).
inline std::string load_bridge(Bridge &b, const char *libpython, const char *python_exe)
{
  if (b.init) return "";
  if (!dlsym(RTLD_DEFAULT, "Py_IsInitialized")) {  // the lmp executable: no Python yet
    if (libpython[0] == '\0')
      return std::string("the plugin was built with a Python that has no shared libpython (") + python_exe +
             "): run LAMMPS from Python (deepmd_paddle.lammps.lammps_instance), or build the plugin with a Python "
             "configured with --enable-shared";
    if (!dlopen(libpython, RTLD_NOW | RTLD_GLOBAL))
      return std::string("cannot load the Python library ") + libpython + ": " + dlerror();
  }
  const std::string path = plugin_dir() + "/libdpp_lammps_bridge.so";
  void *h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!h) return "cannot load " + path + ": " + dlerror();
  b.init = reinterpret_cast<dpp_init_t>(dlsym(h, "dpp_init"));
  b.model_new = reinterpret_cast<dpp_model_new_t>(dlsym(h, "dpp_model_new"));
  b.coeff = reinterpret_cast<dpp_model_coeff_t>(dlsym(h, "dpp_model_coeff"));
  b.compute = reinterpret_cast<dpp_model_compute_t>(dlsym(h, "dpp_model_compute"));
  b.devi = reinterpret_cast<dpp_model_devi_t>(dlsym(h, "dpp_model_devi"));
  b.model_free = reinterpret_cast<dpp_model_free_t>(dlsym(h, "dpp_model_free"));
  if (!b.init || !b.model_new || !b.coeff || !b.compute || !b.devi || !b.model_free) {
    b.init = nullptr;
    return path + " lacks the bridge functions: rebuild with `dpp lammps-plugin --build --force`";
  }
  return "";
}

// A JSON string literal of s.
inline std::string json_string(const std::string &s)
{
  std::string out = "\"";
  for (const char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\u%04x", c);
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

}  // namespace dpp_lammps

#endif
