// Cell-list neighbour search; see neighbor_list.h for the contract.
#include "neighbor_list.h"

#include <algorithm>
#include <cmath>
#include <limits>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace deepmd_paddle {
namespace {

// Cells per direction are at least rcut / kCellsPerRcut thick (in plane spacing).
constexpr int kCellsPerRcut = 2;
// Refuse boxes so thin that one atom's neighbourhood spans more cell images than this.
constexpr double kMaxSearchCells = 1e7;
constexpr double kMaxReach = 1e6;

struct Candidate {
  double d2;
  int32_t j;
  int32_t img[3];  // periodic image of the wrapped atom j; for a given j it orders like the
                   // output shift (which adds the wraps of i and j, the same for all images)
};

inline bool candidate_less(const Candidate& x, const Candidate& y) {
  if (x.d2 != y.d2) return x.d2 < y.d2;
  if (x.j != y.j) return x.j < y.j;
  if (x.img[0] != y.img[0]) return x.img[0] < y.img[0];
  if (x.img[1] != y.img[1]) return x.img[1] < y.img[1];
  return x.img[2] < y.img[2];
}

inline int cell_index(double s, int nc) {
  const double v = s * nc;
  if (!(v >= 0.0)) return 0;  // also NaN
  if (v >= nc) return nc - 1;
  return static_cast<int>(v);
}

inline int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

// One frame's atoms binned into a grid of cells (atoms sorted by cell).
struct Grid {
  bool pbc = false;
  double H[3][3] = {{0}};  // lattice vectors as rows (pbc only)
  int nc[3] = {1, 1, 1};   // cells per direction
  int m[3] = {0, 0, 0};    // cell offsets to search per direction
  std::vector<int64_t> cell_start;  // [ncell + 1]
  std::vector<int32_t> order;       // sorted position -> atom
  std::vector<int32_t> cell3;       // sorted position -> (c0, c1, c2)
  std::vector<double> xw;           // sorted position -> wrapped Cartesian coordinate
  std::vector<int64_t> wrap;        // atom -> integer lattice vector removed by wrapping
};

bool invert3(const double A[3][3], double inv[3][3], double* det_out) {
  const double c00 = A[1][1] * A[2][2] - A[1][2] * A[2][1];
  const double c01 = A[1][2] * A[2][0] - A[1][0] * A[2][2];
  const double c02 = A[1][0] * A[2][1] - A[1][1] * A[2][0];
  const double det = A[0][0] * c00 + A[0][1] * c01 + A[0][2] * c02;
  *det_out = det;
  if (!(std::fabs(det) > 0.0) || !std::isfinite(det)) return false;
  const double id = 1.0 / det;
  inv[0][0] = c00 * id;
  inv[1][0] = c01 * id;
  inv[2][0] = c02 * id;
  inv[0][1] = (A[0][2] * A[2][1] - A[0][1] * A[2][2]) * id;
  inv[1][1] = (A[0][0] * A[2][2] - A[0][2] * A[2][0]) * id;
  inv[2][1] = (A[0][1] * A[2][0] - A[0][0] * A[2][1]) * id;
  inv[0][2] = (A[0][1] * A[1][2] - A[0][2] * A[1][1]) * id;
  inv[1][2] = (A[0][2] * A[1][0] - A[0][0] * A[1][2]) * id;
  inv[2][2] = (A[0][0] * A[1][1] - A[0][1] * A[1][0]) * id;
  return true;
}

// Keep the grid at most ~4 cells per atom (sparse or huge boxes).
void cap_cells(int nc[3], int64_t nloc) {
  const int64_t cap = std::max<int64_t>(64, 4 * nloc);
  while (static_cast<int64_t>(nc[0]) * nc[1] * nc[2] > cap) {
    int a = 0;
    if (nc[1] > nc[a]) a = 1;
    if (nc[2] > nc[a]) a = 2;
    nc[a] = std::max(1, nc[a] / 2);
  }
}

// Fill the grid for one frame; false when a periodic box is singular or absurdly thin.
template <typename T>
bool build_grid(const T* x, const T* box, int64_t nloc, double rcut, bool pbc, Grid& g) {
  g.pbc = pbc;
  std::vector<double> s(nloc * 3);  // fractional coordinate in [0, 1)
  g.wrap.assign(nloc * 3, 0);
  std::vector<double> xc(nloc * 3);
  if (pbc) {
    double Hinv[3][3], det;
    for (int r = 0; r < 3; ++r)
      for (int c = 0; c < 3; ++c) g.H[r][c] = static_cast<double>(box[3 * r + c]);
    if (!invert3(g.H, Hinv, &det)) return false;
    double spacing[3];  // distance between neighbouring lattice planes
    for (int a = 0; a < 3; ++a) {
      const double* u = g.H[(a + 1) % 3];
      const double* v = g.H[(a + 2) % 3];
      const double cx = u[1] * v[2] - u[2] * v[1];
      const double cy = u[2] * v[0] - u[0] * v[2];
      const double cz = u[0] * v[1] - u[1] * v[0];
      spacing[a] = std::fabs(det) / std::sqrt(cx * cx + cy * cy + cz * cz);
      const double want = std::floor(kCellsPerRcut * spacing[a] / rcut);
      g.nc[a] = want < 1.0 ? 1 : (want > 1e6 ? 1000000 : static_cast<int>(want));
    }
    cap_cells(g.nc, nloc);
    for (int a = 0; a < 3; ++a) {
      const double reach = std::ceil(rcut / spacing[a] * g.nc[a]);  // cells rcut spans
      if (!(reach <= kMaxReach)) return false;  // a box far thinner than rcut
      g.m[a] = static_cast<int>(reach);
    }
    if ((2.0 * g.m[0] + 1) * (2.0 * g.m[1] + 1) * (2.0 * g.m[2] + 1) > kMaxSearchCells) return false;
#pragma omp parallel for schedule(dynamic, 1024)
    for (int64_t i = 0; i < nloc; ++i) {
      const double xi[3] = {double(x[3 * i]), double(x[3 * i + 1]), double(x[3 * i + 2])};
      int64_t n[3];
      for (int a = 0; a < 3; ++a) {
        const double f = xi[0] * Hinv[0][a] + xi[1] * Hinv[1][a] + xi[2] * Hinv[2][a];
        double fl = std::floor(f);
        if (!std::isfinite(fl)) fl = 0.0;
        fl = std::min(std::max(fl, -4e15), 4e15);  // exact in both double and int64
        n[a] = static_cast<int64_t>(fl);
        s[3 * i + a] = f - fl;
        g.wrap[3 * i + a] = n[a];
      }
      for (int c = 0; c < 3; ++c)
        xc[3 * i + c] = xi[c] - (n[0] * g.H[0][c] + n[1] * g.H[1][c] + n[2] * g.H[2][c]);
    }
  } else {
    double lo[3], hi[3];
    for (int a = 0; a < 3; ++a) {
      lo[a] = std::numeric_limits<double>::infinity();
      hi[a] = -lo[a];
    }
    for (int64_t i = 0; i < nloc; ++i)
      for (int a = 0; a < 3; ++a) {
        const double v = x[3 * i + a];
        if (v < lo[a]) lo[a] = v;
        if (v > hi[a]) hi[a] = v;
      }
    double width[3];
    for (int a = 0; a < 3; ++a) {
      width[a] = (hi[a] >= lo[a]) ? hi[a] - lo[a] : 0.0;
      if (!std::isfinite(width[a])) width[a] = 0.0;
      const double want = std::floor(width[a] / (rcut / kCellsPerRcut));
      g.nc[a] = want < 1.0 ? 1 : (want > 1e6 ? 1000000 : static_cast<int>(want));
    }
    cap_cells(g.nc, nloc);
    for (int a = 0; a < 3; ++a) {
      const int reach = g.nc[a] == 1 ? 0 : static_cast<int>(std::ceil(rcut / (width[a] / g.nc[a])));
      g.m[a] = std::min(reach, g.nc[a] - 1);
    }
    for (int64_t i = 0; i < nloc; ++i)
      for (int a = 0; a < 3; ++a) {
        xc[3 * i + a] = x[3 * i + a];
        s[3 * i + a] = g.nc[a] == 1 ? 0.0 : (xc[3 * i + a] - lo[a]) / width[a];
      }
  }
  // counting sort of the atoms by cell
  const int64_t ncell = static_cast<int64_t>(g.nc[0]) * g.nc[1] * g.nc[2];
  std::vector<int64_t> cell_of(nloc);
  g.cell_start.assign(ncell + 1, 0);
  for (int64_t i = 0; i < nloc; ++i) {
    const int c0 = cell_index(s[3 * i], g.nc[0]);
    const int c1 = cell_index(s[3 * i + 1], g.nc[1]);
    const int c2 = cell_index(s[3 * i + 2], g.nc[2]);
    cell_of[i] = (static_cast<int64_t>(c0) * g.nc[1] + c1) * g.nc[2] + c2;
    ++g.cell_start[cell_of[i] + 1];
  }
  for (int64_t c = 0; c < ncell; ++c) g.cell_start[c + 1] += g.cell_start[c];
  std::vector<int64_t> fill(g.cell_start.begin(), g.cell_start.end() - 1);
  g.order.resize(nloc);
  g.cell3.resize(nloc * 3);
  g.xw.resize(nloc * 3);
  for (int64_t i = 0; i < nloc; ++i) {
    const int64_t p = fill[cell_of[i]]++;
    g.order[p] = static_cast<int32_t>(i);
    const int64_t c = cell_of[i];
    g.cell3[3 * p] = static_cast<int32_t>(c / (static_cast<int64_t>(g.nc[1]) * g.nc[2]));
    g.cell3[3 * p + 1] = static_cast<int32_t>((c / g.nc[2]) % g.nc[1]);
    g.cell3[3 * p + 2] = static_cast<int32_t>(c % g.nc[2]);
    for (int a = 0; a < 3; ++a) g.xw[3 * p + a] = xc[3 * i + a];
  }
  return true;
}

}  // namespace

template <typename T>
void neighbor_list(const T* coord, const T* box, const int32_t* atype, int64_t nf, int64_t nloc,
                   double rcut, const std::vector<int>& sel, bool pbc, int32_t* nlist, T* shift,
                   int32_t* nmax, T* mindist) {
  const int ntypes = static_cast<int>(sel.size());
  std::vector<int> offset(ntypes + 1, 0);
  for (int t = 0; t < ntypes; ++t) offset[t + 1] = offset[t] + std::max(0, sel[t]);
  const int64_t nnei = offset[ntypes];
  const double rc2 = rcut * rcut;

  // every row is written once below (found neighbours, then padding): no upfront fill
  std::fill(nmax, nmax + nf * ntypes, 0);

  for (int64_t f = 0; f < nf; ++f) {
    const T* x = coord + f * nloc * 3;
    const int32_t* ty = atype + f * nloc;
    int32_t* nl_f = nlist + f * nloc * nnei;
    T* sh_f = shift + f * nloc * nnei * 3;
    Grid g;
    if (nloc == 0 || !build_grid(x, pbc ? box + f * 9 : nullptr, nloc, rcut, pbc, g)) {
      std::fill(nl_f, nl_f + nloc * nnei, -1);
      std::fill(sh_f, sh_f + nloc * nnei * 3, T(0));
      mindist[f] = nloc == 0 ? T(rcut) : T(0);
      continue;
    }
    std::vector<int32_t> stype(nloc);
    for (int64_t p = 0; p < nloc; ++p) stype[p] = ty[g.order[p]];
    double min_d2 = rc2;
    std::vector<int32_t> frame_max(ntypes, 0);

#pragma omp parallel
    {
      std::vector<std::vector<Candidate>> cand(ntypes);
      std::vector<int32_t> my_max(ntypes, 0);
      double my_min = rc2;
#pragma omp for schedule(dynamic, 32)
      for (int64_t p = 0; p < nloc; ++p) {
        const int32_t i = g.order[p];
        const int64_t* wi = &g.wrap[3 * i];
        const double xi = g.xw[3 * p], yi = g.xw[3 * p + 1], zi = g.xw[3 * p + 2];
        for (auto& c : cand) c.clear();
        for (int d0 = -g.m[0]; d0 <= g.m[0]; ++d0) {
          int64_t k0 = g.cell3[3 * p] + d0, i0 = 0;
          if (g.pbc) {
            i0 = floor_div(k0, g.nc[0]);
            k0 -= i0 * g.nc[0];
          } else if (k0 < 0 || k0 >= g.nc[0]) {
            continue;
          }
          for (int d1 = -g.m[1]; d1 <= g.m[1]; ++d1) {
            int64_t k1 = g.cell3[3 * p + 1] + d1, i1 = 0;
            if (g.pbc) {
              i1 = floor_div(k1, g.nc[1]);
              k1 -= i1 * g.nc[1];
            } else if (k1 < 0 || k1 >= g.nc[1]) {
              continue;
            }
            // along the third direction the cells of one image are contiguous in memory
            const int64_t row = (k0 * g.nc[1] + k1) * g.nc[2];
            int64_t lo = g.cell3[3 * p + 2] - g.m[2], hi = g.cell3[3 * p + 2] + g.m[2];
            if (!g.pbc) {
              lo = std::max<int64_t>(lo, 0);
              hi = std::min<int64_t>(hi, g.nc[2] - 1);
            }
            for (int64_t i2 = floor_div(lo, g.nc[2]); i2 <= floor_div(hi, g.nc[2]); ++i2) {
              const int64_t a2 = std::max(lo, i2 * g.nc[2]) - i2 * g.nc[2];
              const int64_t b2 = std::min(hi, i2 * g.nc[2] + g.nc[2] - 1) - i2 * g.nc[2];
              double tx = 0, ty_ = 0, tz = 0;  // image translation
              if (g.pbc) {
                tx = i0 * g.H[0][0] + i1 * g.H[1][0] + i2 * g.H[2][0];
                ty_ = i0 * g.H[0][1] + i1 * g.H[1][1] + i2 * g.H[2][1];
                tz = i0 * g.H[0][2] + i1 * g.H[1][2] + i2 * g.H[2][2];
              }
              const int64_t q_end = g.cell_start[row + b2 + 1];
              for (int64_t q = g.cell_start[row + a2]; q < q_end; ++q) {
                const double dx = (g.xw[3 * q] - xi) + tx;
                const double dy = (g.xw[3 * q + 1] - yi) + ty_;
                const double dz = (g.xw[3 * q + 2] - zi) + tz;
                const double d2 = dx * dx + dy * dy + dz * dz;
                if (!(d2 < rc2)) continue;
                const int32_t j = g.order[q];
                if (d2 == 0.0) {  // i itself, or an atom on top of it
                  if (j != i) my_min = 0.0;
                  continue;
                }
                if (d2 < my_min) my_min = d2;
                const int32_t tj = stype[q];
                if (tj < 0 || tj >= ntypes) continue;
                Candidate c;
                c.d2 = d2;
                c.j = j;
                c.img[0] = static_cast<int32_t>(i0);
                c.img[1] = static_cast<int32_t>(i1);
                c.img[2] = static_cast<int32_t>(i2);
                cand[tj].push_back(c);
              }
            }
          }
        }
        const int32_t ti = ty[i];
        const bool centre_ok = ti >= 0 && ti < ntypes;
        for (int t = 0; t < ntypes; ++t) {
          auto& v = cand[t];
          const int64_t cnt = static_cast<int64_t>(v.size());
          if (cnt > my_max[t]) my_max[t] = static_cast<int32_t>(cnt);
          const int64_t width = offset[t + 1] - offset[t];
          const int64_t keep = centre_ok ? std::min<int64_t>(cnt, width) : 0;
          if (keep < cnt) std::nth_element(v.begin(), v.begin() + keep, v.end(), candidate_less);
          std::sort(v.begin(), v.begin() + keep, candidate_less);
          int32_t* row = nl_f + static_cast<int64_t>(i) * nnei + offset[t];
          T* srow = sh_f + (static_cast<int64_t>(i) * nnei + offset[t]) * 3;
          std::fill(row + keep, row + width, -1);
          std::fill(srow + 3 * keep, srow + 3 * width, T(0));
          for (int64_t k = 0; k < keep; ++k) {
            const Candidate& c = v[k];
            row[k] = c.j;
            double s[3] = {0.0, 0.0, 0.0};
            if (g.pbc) {
              const int64_t* wj = &g.wrap[3 * c.j];
              for (int a = 0; a < 3; ++a) s[a] = static_cast<double>(c.img[a] - wj[a] + wi[a]);
            }
            for (int a = 0; a < 3; ++a)
              srow[3 * k + a] = static_cast<T>(s[0] * g.H[0][a] + s[1] * g.H[1][a] + s[2] * g.H[2][a]);
          }
        }
      }
#pragma omp critical
      {
        for (int t = 0; t < ntypes; ++t) frame_max[t] = std::max(frame_max[t], my_max[t]);
        min_d2 = std::min(min_d2, my_min);
      }
    }
    for (int t = 0; t < ntypes; ++t) nmax[f * ntypes + t] = frame_max[t];
    mindist[f] = static_cast<T>(min_d2 >= rc2 ? rcut : std::sqrt(min_d2));
  }
}

template void neighbor_list<float>(const float*, const float*, const int32_t*, int64_t, int64_t,
                                   double, const std::vector<int>&, bool, int32_t*, float*,
                                   int32_t*, float*);
template void neighbor_list<double>(const double*, const double*, const int32_t*, int64_t,
                                    int64_t, double, const std::vector<int>&, bool, int32_t*,
                                    double*, int32_t*, double*);

}  // namespace deepmd_paddle
