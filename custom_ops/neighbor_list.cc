// The neighbour search of whole frames: grid, then search and format every centre atom in
// parallel (see neighbor_list.h for the contract).
#include "neighbor_list.h"

#include <algorithm>
#include <cmath>

namespace dpp {

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
    CellGrid g;
    if (nloc == 0 || !build_cell_grid(x, pbc ? box + f * 9 : nullptr, nloc, rcut, pbc, g)) {
      std::fill(nl_f, nl_f + nloc * nnei, -1);
      std::fill(sh_f, sh_f + nloc * nnei * 3, T(0));
      mindist[f] = nloc == 0 ? T(rcut) : T(0);
      continue;
    }
    std::vector<int32_t> stype(nloc);  // type by sorted position
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
        search_cells(g, p, rc2, stype.data(), ntypes, cand, my_min);
        const bool centre_ok = ty[i] >= 0 && ty[i] < ntypes;
        format_sel(g, i, cand, offset, centre_ok, nl_f + static_cast<int64_t>(i) * nnei,
                   sh_f + static_cast<int64_t>(i) * nnei * 3, my_max.data());
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

}  // namespace dpp
