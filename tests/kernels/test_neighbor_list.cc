// The neighbour search (custom_ops/neighbor_list.h), step by step and whole, against an
// O(N^2) search over every periodic image that can lie within rcut.
#include <algorithm>
#include <array>
#include <cmath>
#include <set>
#include <tuple>
#include <vector>

#include "check.h"
#include "neighbor_list.h"

namespace {

using Key = std::tuple<int, int, int, int>;  // j, lattice shift n (relative to the given coordinates)

struct Pair {
  double d2;
  int j, n[3];
};

struct System {
  const char* name;
  int nloc;
  bool pbc;
  double box[9];
  double rcut;
  std::vector<double> x;  // nloc x 3
  std::vector<int32_t> type;
};

// Random atoms: in the box (fractional -0.6..1.6, so that wrapping matters), or in a cube.
System make_system(const char* name, int nloc, bool pbc, const std::array<double, 9>& box, double rcut, uint64_t seed) {
  System s{name, nloc, pbc, {}, rcut, std::vector<double>(3 * nloc), std::vector<int32_t>(nloc)};
  std::copy(box.begin(), box.end(), s.box);
  kt::Rng rng(seed);
  for (int i = 0; i < nloc; ++i) {
    const double f[3] = {rng.uniform(-0.6, 1.6), rng.uniform(-0.6, 1.6), rng.uniform(-0.6, 1.6)};
    for (int c = 0; c < 3; ++c)
      s.x[3 * i + c] = pbc ? f[0] * box[c] + f[1] * box[3 + c] + f[2] * box[6 + c] : 8.0 * rng.uniform(0, 1);
    s.type[i] = rng.integer(0, 1);
  }
  return s;
}

std::vector<System> systems() {
  return {
      make_system("orthorhombic", 60, true, {6.5, 0, 0, 0, 7.0, 0, 0, 0, 7.5}, 3.0, 1),
      make_system("triclinic", 60, true, {6.5, 0, 0, 1.3, 6.8, 0, -0.9, 1.1, 7.2}, 3.0, 2),
      make_system("small", 6, true, {2.1, 0, 0, 0.4, 2.3, 0, 0.3, -0.2, 2.4}, 3.5, 3),  // several images
      make_system("open", 50, false, {0, 0, 0, 0, 0, 0, 0, 0, 0}, 3.0, 4),
  };
}

void inverse(const double* H, double inv[9]) {
  const double det = H[0] * (H[4] * H[8] - H[5] * H[7]) - H[1] * (H[3] * H[8] - H[5] * H[6]) +
                     H[2] * (H[3] * H[7] - H[4] * H[6]);
  inv[0] = (H[4] * H[8] - H[5] * H[7]) / det;
  inv[1] = (H[2] * H[7] - H[1] * H[8]) / det;
  inv[2] = (H[1] * H[5] - H[2] * H[4]) / det;
  inv[3] = (H[5] * H[6] - H[3] * H[8]) / det;
  inv[4] = (H[0] * H[8] - H[2] * H[6]) / det;
  inv[5] = (H[2] * H[3] - H[0] * H[5]) / det;
  inv[6] = (H[3] * H[7] - H[4] * H[6]) / det;
  inv[7] = (H[1] * H[6] - H[0] * H[7]) / det;
  inv[8] = (H[0] * H[4] - H[1] * H[3]) / det;
}

// Every pair (j, n) with 0 < |x_j + n H - x_i| < rcut: n_a is bounded by rcut / (plane spacing a)
// around the fractional difference, which this loop covers with one image to spare.
std::vector<Pair> brute_force(const System& s, int i) {
  std::vector<Pair> out;
  double inv[9] = {0};
  int reach[3] = {0, 0, 0};
  if (s.pbc) {
    inverse(s.box, inv);
    for (int a = 0; a < 3; ++a) {  // |column a of H^-1| = 1 / plane spacing
      const double norm = std::sqrt(inv[a] * inv[a] + inv[3 + a] * inv[3 + a] + inv[6 + a] * inv[6 + a]);
      reach[a] = int(std::ceil(s.rcut * norm)) + 3;  // + the fractional difference (< 2.2 here)
    }
  }
  for (int j = 0; j < s.nloc; ++j)
    for (int n0 = -reach[0]; n0 <= reach[0]; ++n0)
      for (int n1 = -reach[1]; n1 <= reach[1]; ++n1)
        for (int n2 = -reach[2]; n2 <= reach[2]; ++n2) {
          double d2 = 0;
          for (int c = 0; c < 3; ++c) {
            const double r = s.x[3 * j + c] + n0 * s.box[c] + n1 * s.box[3 + c] + n2 * s.box[6 + c] - s.x[3 * i + c];
            d2 += r * r;
          }
          if (d2 > 0 && d2 < s.rcut * s.rcut) out.push_back({d2, j, {n0, n1, n2}});
        }
  return out;
}

// The lattice shift n of a Cartesian shift.
Key key_of(const System& s, int j, const double* shift) {
  if (!s.pbc) return Key{j, 0, 0, 0};
  double inv[9];
  inverse(s.box, inv);
  int n[3];
  for (int a = 0; a < 3; ++a)
    n[a] = int(std::lround(shift[0] * inv[a] + shift[1] * inv[3 + a] + shift[2] * inv[6 + a]));
  return Key{j, n[0], n[1], n[2]};
}

// The whole search for one system and precision: slots vs brute force, order, padding, nmax, mindist.
template <typename T>
void check_whole(const System& s, const std::vector<int>& sel) {
  const std::string tag = std::string(s.name) + (sizeof(T) == 4 ? " float" : " double");
  const int nnei = sel[0] + sel[1];
  std::vector<T> x(s.x.begin(), s.x.end()), box(s.box, s.box + 9);
  std::vector<int32_t> nlist(s.nloc * nnei);
  std::vector<T> shift(s.nloc * nnei * 3), mindist(1);
  std::vector<int32_t> nmax(2);
  dpp::neighbor_list<T>(x.data(), box.data(), s.type.data(), 1, s.nloc, s.rcut, sel, s.pbc, nlist.data(),
                        shift.data(), nmax.data(), mindist.data());
  const double tol = sizeof(T) == 4 ? 1e-4 : 1e-10;
  int most[2] = {0, 0};
  double min_d2 = s.rcut * s.rcut;
  for (int i = 0; i < s.nloc; ++i) {
    std::vector<Pair> all = brute_force(s, i);
    for (const Pair& p : all) min_d2 = std::min(min_d2, p.d2);
    int off = 0;
    for (int t = 0; t < 2; ++t) {
      std::vector<Pair> want;
      for (const Pair& p : all)
        if (s.type[p.j] == t) want.push_back(p);
      most[t] = std::max(most[t], int(want.size()));
      std::sort(want.begin(), want.end(), [](const Pair& a, const Pair& b) { return a.d2 < b.d2; });
      const int keep = std::min<int>(sel[t], want.size());
      std::vector<double> got_d2;
      for (int k = 0; k < sel[t]; ++k) {
        const int slot = i * nnei + off + k;
        const int j = nlist[slot];
        if (k >= keep) {
          KT_CHECK(j == -1 && shift[3 * slot] == 0 && shift[3 * slot + 1] == 0 && shift[3 * slot + 2] == 0,
                   tag + ": padding is -1 with a zero shift");
          continue;
        }
        KT_CHECK(j >= 0 && j < s.nloc && s.type[j] == t, tag + ": slot of the right type");
        if (j < 0 || j >= s.nloc) continue;
        double d2 = 0, sh[3];
        for (int c = 0; c < 3; ++c) {
          sh[c] = double(shift[3 * slot + c]);
          const double r = s.x[3 * j + c] + sh[c] - s.x[3 * i + c];
          d2 += r * r;
        }
        got_d2.push_back(d2);
        // the same (j, n) at the same distance as the brute force's k-th (nearest first)
        const Key key = key_of(s, j, sh);
        bool found = false;
        for (const Pair& p : want)
          if (Key{p.j, p.n[0], p.n[1], p.n[2]} == key) found = std::fabs(p.d2 - d2) <= tol * (1 + d2);
        KT_CHECK(found, tag + ": every kept neighbour is a brute-force neighbour");
        KT_CLOSE(d2, want[k].d2, tol, tol, tag + ": k-th nearest distance");
        if (k > 0) KT_CHECK(got_d2[k - 1] <= got_d2[k] + tol * (1 + d2), tag + ": nearest first");
      }
      off += sel[t];
    }
  }
  KT_CHECK(nmax[0] == most[0] && nmax[1] == most[1], tag + ": nmax counts neighbours before truncation");
  KT_CLOSE(mindist[0], std::sqrt(min_d2), tol, tol, tag + ": mindist");
}

// Step 1: the grid holds every atom once, wrapped by an integer lattice vector into the box,
// in the cell its fractional coordinate names, and the searched cells cover rcut.
void check_grid(const System& s) {
  dpp::CellGrid g;
  const bool ok = dpp::build_cell_grid<double>(s.x.data(), s.box, s.nloc, s.rcut, s.pbc, g);
  KT_CHECK(ok, std::string(s.name) + ": grid built");
  if (!ok) return;
  const std::string tag = std::string(s.name) + " grid";
  const int ncell = g.nc[0] * g.nc[1] * g.nc[2];
  KT_CHECK(int(g.cell_start.size()) == ncell + 1 && g.cell_start[0] == 0 && g.cell_start[ncell] == s.nloc,
           tag + ": cell_start spans the atoms");
  std::vector<int> seen(s.nloc, 0);
  double inv[9] = {0};
  if (s.pbc) inverse(s.box, inv);
  for (int p = 0; p < s.nloc; ++p) {
    const int i = g.order[p];
    ++seen[i];
    const int cell = (g.cell3[3 * p] * g.nc[1] + g.cell3[3 * p + 1]) * g.nc[2] + g.cell3[3 * p + 2];
    KT_CHECK(g.cell_start[cell] <= p && p < g.cell_start[cell + 1], tag + ": sorted by cell");
    for (int c = 0; c < 3; ++c) {
      double want = s.x[3 * i + c];
      for (int a = 0; a < 3; ++a) want -= g.wrap[3 * i + a] * s.box[3 * a + c];
      KT_CLOSE(g.xw[3 * p + c], want, 1e-12, 1e-12, tag + ": xw = x - wrap H");
    }
    if (s.pbc)
      for (int a = 0; a < 3; ++a) {
        const double f = g.xw[3 * p] * inv[a] + g.xw[3 * p + 1] * inv[3 + a] + g.xw[3 * p + 2] * inv[6 + a];
        KT_CHECK(f > -1e-12 && f < 1 + 1e-12, tag + ": wrapped into the box");
        KT_CHECK(std::fabs(f * g.nc[a] - g.cell3[3 * p + a] - 0.5) <= 0.5 + 1e-9, tag + ": the cell of its fraction");
        // the searched cells reach rcut: m cells of plane spacing / nc
        const double norm = std::sqrt(inv[a] * inv[a] + inv[3 + a] * inv[3 + a] + inv[6 + a] * inv[6 + a]);
        KT_CHECK(g.m[a] / (norm * g.nc[a]) >= s.rcut, tag + ": the search reaches rcut");
      }
    else
      KT_CHECK(g.wrap[3 * i] == 0 && g.wrap[3 * i + 1] == 0 && g.wrap[3 * i + 2] == 0, tag + ": open: no wrap");
  }
  KT_CHECK(std::count(seen.begin(), seen.end(), 1) == s.nloc, tag + ": order is a permutation");
}

// Step 2: the candidates of every atom are exactly the brute-force pairs; step 3 on them gives
// the sel slots of the whole search.
void check_search(const System& s) {
  const std::string tag = std::string(s.name) + " search";
  dpp::CellGrid g;
  dpp::build_cell_grid<double>(s.x.data(), s.box, s.nloc, s.rcut, s.pbc, g);
  std::vector<int32_t> stype(s.nloc);
  for (int p = 0; p < s.nloc; ++p) stype[p] = s.type[g.order[p]];
  std::vector<std::vector<dpp::Candidate>> cand(2);
  double min_d2 = s.rcut * s.rcut;
  for (int p = 0; p < s.nloc; ++p) {
    const int i = g.order[p];
    dpp::search_cells(g, p, s.rcut * s.rcut, stype.data(), 2, cand, min_d2);
    std::set<Key> got, want;
    for (int t = 0; t < 2; ++t)
      for (const auto& c : cand[t]) {
        KT_CHECK(s.type[c.j] == t, tag + ": candidate under its type");
        double sh[3];  // the image of wrapped j, as a shift of the given coordinates
        for (int d = 0; d < 3; ++d) {
          sh[d] = 0;
          for (int a = 0; a < 3; ++a) sh[d] += double(c.img[a] - g.wrap[3 * c.j + a] + g.wrap[3 * i + a]) * s.box[3 * a + d];
        }
        got.insert(key_of(s, c.j, sh));
      }
    for (const Pair& q : brute_force(s, i)) want.insert(Key{q.j, q.n[0], q.n[1], q.n[2]});
    KT_CHECK(got == want, tag + ": candidates = brute force, atom " + std::to_string(i));
    // step 3 with centre_ok false pads the whole row; with true it keeps the nearest in order
    const std::vector<int> offset = {0, 4, 9};
    std::vector<int32_t> row(9), most(2, 0);
    std::vector<double> shift(27);
    auto copy = cand;
    dpp::format_sel<double>(g, i, copy, offset, false, row.data(), shift.data(), most.data());
    KT_CHECK(*std::max_element(row.begin(), row.end()) == -1, tag + ": no centre type, no neighbours");
    dpp::format_sel<double>(g, i, cand, offset, true, row.data(), shift.data(), most.data());
    for (int t = 0; t < 2; ++t) {
      KT_CHECK(most[t] >= int(cand[t].size()), tag + ": count_max");
      std::vector<dpp::Candidate> sorted = cand[t];
      std::sort(sorted.begin(), sorted.end(), dpp::candidate_less);
      for (int k = 0; k < offset[t + 1] - offset[t]; ++k) {
        const int want_j = k < int(sorted.size()) ? sorted[k].j : -1;
        KT_CHECK(row[offset[t] + k] == want_j, tag + ": format keeps candidate_less order");
      }
    }
  }
}

}  // namespace

KT_GROUP(nlist_steps) {
  for (const System& s : systems()) {
    check_grid(s);
    check_search(s);
  }
  // candidate_less: distance, then j, then image
  const dpp::Candidate a{1.0, 3, {0, 0, 1}}, b{1.0, 3, {0, 1, -1}}, c{1.0, 2, {5, 5, 5}}, d{0.5, 9, {0, 0, 0}};
  KT_CHECK(dpp::candidate_less(d, c) && dpp::candidate_less(c, a) && dpp::candidate_less(a, b) &&
               !dpp::candidate_less(b, a),
           "candidate_less order");
}

KT_GROUP(neighbor_list) {
  for (const System& s : systems()) {
    check_whole<double>(s, {40, 40});  // room for every neighbour
    check_whole<float>(s, {40, 40});
    check_whole<double>(s, {3, 5});    // truncated: the nearest are kept
  }
  // a singular box gives an empty list and mindist 0; coinciding atoms give mindist 0
  System s = make_system("edge", 4, true, {3, 0, 0, 6, 0, 0, 0, 0, 3}, 2.0, 5);
  std::vector<int32_t> nl(4 * 3), nmax(2);
  std::vector<double> sh(4 * 3 * 3), md(1);
  dpp::neighbor_list<double>(s.x.data(), s.box, s.type.data(), 1, 4, 2.0, {1, 2}, true, nl.data(), sh.data(),
                             nmax.data(), md.data());
  KT_CHECK(*std::max_element(nl.begin(), nl.end()) == -1 && md[0] == 0.0, "singular box: empty list");
  const double x2[6] = {1.0, 1.0, 1.0, 1.0, 1.0, 1.0};
  const int32_t t2[2] = {0, 1};
  const double box2[9] = {5, 0, 0, 0, 5, 0, 0, 0, 5};
  dpp::neighbor_list<double>(x2, box2, t2, 1, 2, 2.0, {1, 2}, true, nl.data(), sh.data(), nmax.data(), md.data());
  KT_CHECK(md[0] == 0.0 && nl[0] == -1, "coinciding atoms: mindist 0, not neighbours");
}
