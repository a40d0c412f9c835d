// The arguments of `pair_style deepmd MODEL [MODEL...] [keyword value ...]`, DeePMD-kit's syntax
// (doc/third-party/lammps-command.md): the models are the arguments before the first keyword.
// Plain C++ (no LAMMPS types): parse_settings returns "" or the message of a LAMMPS error.
#ifndef DPP_LAMMPS_PAIR_SETTINGS_H
#define DPP_LAMMPS_PAIR_SETTINGS_H

#include <cerrno>
#include <cstdlib>
#include <string>
#include <vector>

namespace dpp_lammps {

struct PairSettings {
  std::vector<std::string> models;
  int out_freq = 100;                     // model deviation every out_freq steps (0: never)
  std::string out_file = "model_devi.out";
  bool atomic = false;                    // per-atom force deviations in out_file
  bool relative = false, relative_v = false;
  double relative_level = 0.0, relative_v_level = 0.0;  // as given, in LAMMPS's units
  bool has_fparam = false, has_aparam = false;
  std::vector<double> fparam, aparam;     // aparam: the same values for every atom
  std::string fparam_compute;             // fparam_from_compute ID ("" when not given)
};

// Keywords built here, and DeePMD-kit's keywords that are not (refused by name).
inline const std::vector<std::string> &keywords()
{
  static const std::vector<std::string> k = {"out_freq", "out_file", "atomic", "relative", "relative_v",
                                             "fparam", "aparam", "fparam_from_compute"};
  return k;
}

inline const std::vector<std::string> &keywords_not_built()
{
  static const std::vector<std::string> k = {"fparam_from_fix", "aparam_from_compute", "ttm", "charge_spin",
                                             "virtual_len", "spin_norm"};
  return k;
}

inline bool among(const std::string &s, const std::vector<std::string> &v)
{
  for (const auto &x : v)
    if (s == x) return true;
  return false;
}

inline bool is_keyword(const std::string &s) { return among(s, keywords()) || among(s, keywords_not_built()); }

inline std::string keyword_list()
{
  std::string out;
  for (const auto &k : keywords()) out += (out.empty() ? "" : " ") + k;
  return out;
}

// A number that is the whole argument; false otherwise.
inline bool to_number(const char *s, double &v)
{
  char *end = nullptr;
  errno = 0;
  v = std::strtod(s, &end);
  return end != s && *end == '\0' && errno != ERANGE;
}

inline std::string parse_settings(int narg, char **arg, PairSettings &s)
{
  s = PairSettings();
  int i = 0;
  while (i < narg && !is_keyword(arg[i])) s.models.emplace_back(arg[i++]);
  if (s.models.empty())
    return "expected `pair_style deepmd MODEL [MODEL ...] [keyword value ...]` (one or more model files, then "
           "keywords among: " + keyword_list() + ")";
  auto number = [&](const std::string &key, double &v) -> std::string {
    if (i + 1 >= narg || is_keyword(arg[i + 1])) return "keyword " + key + " needs a value";
    if (!to_number(arg[i + 1], v)) return "keyword " + key + " needs a number, got `" + arg[i + 1] + "`";
    i += 2;
    return "";
  };
  auto numbers = [&](const std::string &key, std::vector<double> &v) -> std::string {
    ++i;
    double x;
    while (i < narg && !is_keyword(arg[i])) {
      if (!to_number(arg[i], x)) return "keyword " + key + " takes numbers, got `" + arg[i] + "`";
      v.push_back(x);
      ++i;
    }
    if (v.empty()) return "keyword " + key + " needs one or more values";
    return "";
  };
  std::string err;
  while (i < narg && err.empty()) {
    const std::string key = arg[i];
    if (key == "out_freq") {
      double v = 0.0;
      err = number(key, v);
      if (err.empty() && (v < 0 || v != static_cast<double>(static_cast<int>(v))))
        err = "out_freq must be an integer >= 0, got " + std::string(arg[i - 1]);
      s.out_freq = static_cast<int>(v);
    } else if (key == "out_file") {
      if (i + 1 >= narg || is_keyword(arg[i + 1])) err = "keyword out_file needs a file name";
      else s.out_file = arg[i + 1];
      i += 2;
    } else if (key == "atomic") {
      s.atomic = true;
      ++i;
    } else if (key == "relative") {
      s.relative = true;
      err = number(key, s.relative_level);
    } else if (key == "relative_v") {
      s.relative_v = true;
      err = number(key, s.relative_v_level);
    } else if (key == "fparam") {
      s.has_fparam = true;
      s.fparam.clear();
      err = numbers(key, s.fparam);
    } else if (key == "aparam") {
      s.has_aparam = true;
      s.aparam.clear();
      err = numbers(key, s.aparam);
    } else if (key == "fparam_from_compute") {
      if (i + 1 >= narg || is_keyword(arg[i + 1])) err = "keyword fparam_from_compute needs a compute ID";
      else s.fparam_compute = arg[i + 1];
      i += 2;
    } else if (among(key, keywords_not_built())) {
      err = "keyword " + key + " of DeePMD-kit's pair style is not supported by deepmd_paddle; supported: " +
            keyword_list();
    } else {
      err = "unknown keyword `" + key + "`; allowed: " + keyword_list();
    }
  }
  if (err.empty() && s.has_fparam && !s.fparam_compute.empty())
    err = "fparam and fparam_from_compute should not be set together";
  return err;
}

}  // namespace dpp_lammps

#endif
