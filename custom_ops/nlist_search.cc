// Steps 2 and 3 of the neighbour search: the cells around one atom, and its row of sel
// slots (see neighbor_list.h).
#include <algorithm>
#include <cmath>

#include "neighbor_list.h"

namespace dpp {
namespace {

inline int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

}  // namespace

void search_cells(const CellGrid& g, int64_t p, double rc2, const int32_t* sorted_type, int ntypes,
                  std::vector<std::vector<Candidate>>& cand, double& min_d2) {
  const int32_t i = g.order[p];
  const double xi = g.xw[3 * p], yi = g.xw[3 * p + 1], zi = g.xw[3 * p + 2];
  double my_min = min_d2;
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
        double tx = 0, ty = 0, tz = 0;  // image translation
        if (g.pbc) {
          tx = i0 * g.H[0][0] + i1 * g.H[1][0] + i2 * g.H[2][0];
          ty = i0 * g.H[0][1] + i1 * g.H[1][1] + i2 * g.H[2][1];
          tz = i0 * g.H[0][2] + i1 * g.H[1][2] + i2 * g.H[2][2];
        }
        const int64_t q_end = g.cell_start[row + b2 + 1];
        for (int64_t q = g.cell_start[row + a2]; q < q_end; ++q) {
          const double dx = (g.xw[3 * q] - xi) + tx;
          const double dy = (g.xw[3 * q + 1] - yi) + ty;
          const double dz = (g.xw[3 * q + 2] - zi) + tz;
          const double d2 = dx * dx + dy * dy + dz * dz;
          if (!(d2 < rc2)) continue;
          const int32_t j = g.order[q];
          if (d2 == 0.0) {  // i itself, or an atom on top of it
            if (j != i) my_min = 0.0;
            continue;
          }
          if (d2 < my_min) my_min = d2;
          const int32_t tj = sorted_type[q];
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
  min_d2 = my_min;
}

template <typename T>
void format_sel(const CellGrid& g, int32_t i, std::vector<std::vector<Candidate>>& cand,
                const std::vector<int>& offset, bool centre_ok, int32_t* nlist_row, T* shift_row,
                int32_t* count_max) {
  const int64_t* wi = &g.wrap[3 * i];
  for (std::size_t t = 0; t < cand.size(); ++t) {
    auto& v = cand[t];
    const int64_t cnt = static_cast<int64_t>(v.size());
    if (cnt > count_max[t]) count_max[t] = static_cast<int32_t>(cnt);
    const int64_t width = offset[t + 1] - offset[t];
    const int64_t keep = centre_ok ? std::min<int64_t>(cnt, width) : 0;
    if (keep < cnt) std::nth_element(v.begin(), v.begin() + keep, v.end(), candidate_less);
    std::sort(v.begin(), v.begin() + keep, candidate_less);
    int32_t* row = nlist_row + offset[t];
    T* srow = shift_row + offset[t] * 3;
    std::fill(row + keep, row + width, -1);
    std::fill(srow + 3 * keep, srow + 3 * width, T(0));
    for (int64_t k = 0; k < keep; ++k) {
      const Candidate& c = v[k];
      row[k] = c.j;
      double s[3] = {0.0, 0.0, 0.0};  // image of j relative to the coordinates as given
      if (g.pbc) {
        const int64_t* wj = &g.wrap[3 * c.j];
        for (int a = 0; a < 3; ++a) s[a] = static_cast<double>(c.img[a] - wj[a] + wi[a]);
      }
      for (int a = 0; a < 3; ++a)
        srow[3 * k + a] = static_cast<T>(s[0] * g.H[0][a] + s[1] * g.H[1][a] + s[2] * g.H[2][a]);
    }
  }
}

template void format_sel<float>(const CellGrid&, int32_t, std::vector<std::vector<Candidate>>&,
                                const std::vector<int>&, bool, int32_t*, float*, int32_t*);
template void format_sel<double>(const CellGrid&, int32_t, std::vector<std::vector<Candidate>>&,
                                 const std::vector<int>&, bool, int32_t*, double*, int32_t*);

}  // namespace dpp
