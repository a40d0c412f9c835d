// Cell-list neighbour search for se_e2_a, plain C++ (no Paddle types).
//
// For every centre atom i of every frame, the neighbours j (any atom of the frame, or a
// periodic image of one, including images of i itself) with 0 < |r_ij| < rcut, where
// r_ij = coord[j] + shift - coord[i]. Slots are grouped by neighbour type (sel[0] slots
// for type 0, then sel[1] for type 1, ...); inside a type block nearest first, ties broken
// by local index j and then by the integer lattice shift (lexicographic); unused slots
// hold -1 and a zero shift.
//
// Periodic frames: the box rows are the lattice vectors a, b, c (any handedness, any tilt).
// Coordinates are wrapped into the cell internally; `shift` is the Cartesian lattice
// translation relative to the coordinates as given (which may lie outside the box).
// Fractional cells along each lattice direction have a plane spacing of at least rcut/2,
// so an atom's neighbours lie within +-2 cells (fewer when the box is thin: then several
// images per direction are visited, each once). O(N) time and memory.
// Open frames (pbc = false): the same grid over the bounding box, without images.
//
// Three steps per frame, each usable on its own (neighbor_list runs them in order):
//   1. build_cell_grid  (nlist_grid.cc)    wrap the atoms into the box, bin them into cells;
//   2. search_cells     (nlist_search.cc)  the candidates (j, image, d^2) of one centre atom;
//   3. format_sel       (nlist_search.cc)  keep the sel[t] nearest of each type, in slots.
#pragma once

#include <cstdint>
#include <vector>

namespace dpp {

// ---------------------------------------------------------------- step 1: wrap and grid
// One frame's atoms binned into a grid of cells, atoms sorted by cell ("sorted position" p
// below; order[p] is the atom). Periodic: the cell is the box, fractional cells of plane
// spacing >= rcut / 2 (at most ~4 cells per atom), coordinates wrapped into it. Open: the same
// over the atoms' bounding box, nothing wrapped.
struct CellGrid {
  bool pbc = false;
  double H[3][3] = {{0}};  // lattice vectors as rows (pbc only)
  int nc[3] = {1, 1, 1};   // cells per direction
  int m[3] = {0, 0, 0};    // cell offsets to search per direction (rcut reaches that far)
  std::vector<int64_t> cell_start;  // [ncell + 1]: sorted positions of cell c are cell_start[c]..
  std::vector<int32_t> order;       // sorted position -> atom
  std::vector<int32_t> cell3;       // sorted position -> (c0, c1, c2)
  std::vector<double> xw;           // sorted position -> wrapped Cartesian coordinate
  std::vector<int64_t> wrap;        // atom -> integer lattice vector n removed: x - n H = xw
};

// Fill `g` for one frame: coord [nloc, 3], box [9] (rows a, b, c; read only when pbc). False
// when a periodic box is singular, or so thin that one neighbourhood would span more than 1e7
// cell images.
template <typename T>
bool build_cell_grid(const T* coord, const T* box, int64_t nloc, double rcut, bool pbc, CellGrid& g);

// ---------------------------------------------------------------- step 2: search
// A neighbour found: squared distance, atom, and the image of the wrapped atom j (integer
// lattice offsets; for a given j it orders like the output shift).
struct Candidate {
  double d2;
  int32_t j;
  int32_t img[3];
};

// The order of a type block: nearest first, then by j, then by image (lexicographic).
inline bool candidate_less(const Candidate& x, const Candidate& y) {
  if (x.d2 != y.d2) return x.d2 < y.d2;
  if (x.j != y.j) return x.j < y.j;
  if (x.img[0] != y.img[0]) return x.img[0] < y.img[0];
  if (x.img[1] != y.img[1]) return x.img[1] < y.img[1];
  return x.img[2] < y.img[2];
}

// The atoms (and images) within rcut (d^2 < rc2, d^2 > 0) of the atom at sorted position p,
// appended to cand[type of j] (cleared first; sorted_type[q]: type of the atom at sorted
// position q; types outside 0..ntypes-1 are skipped). min_d2 is lowered to the smallest d^2
// seen, 0 when another atom sits on top of this one.
void search_cells(const CellGrid& g, int64_t p, double rc2, const int32_t* sorted_type, int ntypes,
                  std::vector<std::vector<Candidate>>& cand, double& min_d2);

// ---------------------------------------------------------------- step 3: format into sel
// Centre atom i's row: for each type t, the sel[t] nearest of cand[t] (partially sorted in
// place) in slots offset[t]..offset[t+1]-1 of nlist_row, their Cartesian shifts (relative to
// the coordinates as given) in shift_row, -1 and a zero shift after them. With centre_ok
// false the row is all padding. count_max[t] is raised to cand[t].size() (before truncation).
template <typename T>
void format_sel(const CellGrid& g, int32_t i, std::vector<std::vector<Candidate>>& cand,
                const std::vector<int>& offset, bool centre_ok, int32_t* nlist_row, T* shift_row,
                int32_t* count_max);

// ---------------------------------------------------------------- the whole search
// Inputs, row-major: coord [nf, nloc, 3], box [nf, 9] (read only when pbc), atype [nf, nloc]
// with values in 0..sel.size()-1 (an out-of-range type is skipped as a neighbour and gives
// an empty row as a centre; the caller is expected to check). Outputs: nlist [nf, nloc, nnei]
// (local index or -1), shift [nf, nloc, nnei, 3], nmax [nf, ntypes] (largest number of
// neighbours of each type around any centre, before truncation to sel), mindist [nf]
// (smallest pair distance seen, 0 for coinciding atoms, rcut when there is no pair).
// A frame whose grid cannot be built (see build_cell_grid) gets an empty list and mindist 0.
template <typename T>
void neighbor_list(const T* coord, const T* box, const int32_t* atype, int64_t nf, int64_t nloc,
                   double rcut, const std::vector<int>& sel, bool pbc, int32_t* nlist, T* shift,
                   int32_t* nmax, T* mindist);

}  // namespace dpp
