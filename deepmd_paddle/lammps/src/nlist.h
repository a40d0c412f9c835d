// The model's neighbour list from LAMMPS's full list (plain C++: pointers and ints only).
// nlist[i * nnei + offset[t] + k]: the k-th nearest neighbour of type t of local atom i within
// rcut (-1 past the last), as the model's own neighbour search orders them; atoms of type -1
// (NULL in pair_coeff) are neither centres nor neighbours.
#ifndef DPP_LAMMPS_NLIST_H
#define DPP_LAMMPS_NLIST_H

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

namespace dpp_lammps {

struct NlistEvents {
  int overlap_i = -1, overlap_j = -1;  // two atoms at distance 0 (first pair found)
  int drop_i = -1, drop_t = -1;        // an atom with more type-t neighbours than sel[t] (first one)
  size_t drop_n = 0;
};

inline NlistEvents build_nlist(int nlocal, int inum, const int *ilist, const int *numneigh, int **firstneigh,
                               int neighmask, double **x, const int32_t *mtype, const std::vector<int> &sel,
                               const std::vector<int> &offset, double rc2, std::vector<int32_t> &nlist)
{
  NlistEvents ev;
  const int nsel = static_cast<int>(sel.size()), nnei = offset.back();
  nlist.assign(static_cast<size_t>(std::max(nlocal, 1)) * nnei, -1);
  std::vector<std::vector<std::pair<double, int>>> cand(nsel);
  for (int ii = 0; ii < inum; ++ii) {
    const int i = ilist[ii];
    if (i >= nlocal || mtype[i] < 0) continue;
    for (auto &c : cand) c.clear();
    const int *jlist = firstneigh[i];
    for (int jj = 0; jj < numneigh[i]; ++jj) {
      const int j = jlist[jj] & neighmask;
      const double dx = x[j][0] - x[i][0], dy = x[j][1] - x[i][1], dz = x[j][2] - x[i][2];
      const double d2 = dx * dx + dy * dy + dz * dz;
      const int tj = mtype[j];
      if (!(d2 < rc2) || tj < 0 || tj >= nsel) continue;
      if (d2 == 0.0 && ev.overlap_i < 0) {
        ev.overlap_i = i;
        ev.overlap_j = j;
      }
      cand[tj].emplace_back(d2, j);
    }
    int32_t *row = nlist.data() + static_cast<size_t>(i) * nnei;
    for (int t = 0; t < nsel; ++t) {
      auto &v = cand[t];
      const size_t keep = std::min(v.size(), static_cast<size_t>(sel[t]));
      if (keep < v.size()) {
        std::nth_element(v.begin(), v.begin() + keep, v.end());
        if (ev.drop_i < 0) {
          ev.drop_i = i;
          ev.drop_t = t;
          ev.drop_n = v.size();
        }
      }
      std::sort(v.begin(), v.begin() + keep);
      for (size_t k = 0; k < keep; ++k) row[offset[t] + k] = v[k].second;
    }
  }
  return ev;
}

}  // namespace dpp_lammps

#endif
