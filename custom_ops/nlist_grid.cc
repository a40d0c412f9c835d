// Step 1 of the neighbour search: wrap into the box and bin into cells (see neighbor_list.h).
#include <algorithm>
#include <cmath>
#include <limits>

#include "neighbor_list.h"

namespace dpp {
namespace {

// Cells per direction are at least rcut / kCellsPerRcut thick (in plane spacing).
constexpr int kCellsPerRcut = 2;
// Refuse boxes so thin that one atom's neighbourhood spans more cell images than this.
constexpr double kMaxSearchCells = 1e7;
constexpr double kMaxReach = 1e6;

// The cell of fractional coordinate s in [0, 1) among nc (clamped; NaN goes to cell 0).
inline int cell_index(double s, int nc) {
  const double v = s * nc;
  if (!(v >= 0.0)) return 0;  // also NaN
  if (v >= nc) return nc - 1;
  return static_cast<int>(v);
}

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

}  // namespace

template <typename T>
bool build_cell_grid(const T* x, const T* box, int64_t nloc, double rcut, bool pbc, CellGrid& g) {
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

template bool build_cell_grid<float>(const float*, const float*, int64_t, double, bool, CellGrid&);
template bool build_cell_grid<double>(const double*, const double*, int64_t, double, bool, CellGrid&);

}  // namespace dpp
