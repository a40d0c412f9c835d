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
#pragma once

#include <cstdint>
#include <vector>

namespace deepmd_paddle {

// Inputs, row-major: coord [nf, nloc, 3], box [nf, 9] (read only when pbc), atype [nf, nloc]
// with values in 0..sel.size()-1 (an out-of-range type is skipped as a neighbour and gives
// an empty row as a centre; the caller is expected to check). Outputs: nlist [nf, nloc, nnei]
// (local index or -1), shift [nf, nloc, nnei, 3], nmax [nf, ntypes] (largest number of
// neighbours of each type around any centre, before truncation to sel), mindist [nf]
// (smallest pair distance seen, 0 for coinciding atoms, rcut when there is no pair).
// A periodic frame whose box is singular, or so thin that one neighbourhood would span more
// than 1e7 cell images, gets an empty list and mindist 0.
template <typename T>
void neighbor_list(const T* coord, const T* box, const int32_t* atype, int64_t nf, int64_t nloc,
                   double rcut, const std::vector<int>& sel, bool pbc, int32_t* nlist, T* shift,
                   int32_t* nmax, T* mindist);

}  // namespace deepmd_paddle
