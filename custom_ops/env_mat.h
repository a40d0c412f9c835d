// Environment matrix of se_e2_a per neighbour slot, its gradient and second derivative.
// Plain C++ (no Paddle types).
//
// For a used slot (nlist >= 0) with r_ij = (x, y, z), r = |r_ij|:
//   u = (r - rcut_smth) / (rcut - rcut_smth) clipped to [0, 1]
//   w(r) = u^3 (-6 u^2 + 15 u - 10) + 1
//   R = [w/r, w x/r^2, w y/r^2, w z/r^2]      (Zhang et al., NeurIPS 2018, eq. of R~)
// a padded slot (nlist < 0) has R = 0. Output env = (R - davg[t_i, slot]) / dstd[t_i, slot],
// times mask[t_i, slot] when a mask is given (excluded type pairs: 0 for every slot of an
// excluded neighbour-type block, padding included; DeePMD-kit's exclude_types).
//
// With f0 = w/r and f1 = w/r^2 (functions of r), R0 = f0(r) and Rk = f1(r) x_k, so
//   dR0/dx_l = a x_l                       a = f0'/r
//   dRk/dx_l = f1 d_kl + g x_k x_l         g = f1'/r
//   d2R0/dx_l dx_m = a d_lm + b x_l x_m    b = (f0'' - a)/r^2
//   d2Rk/dx_l dx_m = g (d_kl x_m + d_km x_l + d_lm x_k) + h x_k x_l x_m,  h = (f1'' - g)/r^2
// The Jacobian is recomputed from r_ij in every kernel (nothing is stored between passes).
#pragma once

#include <cstdint>

namespace dpp {

// Shapes (row-major): rij [nf*nloc, nnei, 3], nlist [nf*nloc, nnei], atype [nf*nloc],
// davg / dstd [ntypes, nnei, 4], mask [ntypes, nnei] (0 or 1; null: all 1), env / g_env / gg_env [nf*nloc, nnei, 4],
// g_rij / gg_rij [nf*nloc, nnei, 3]. `natoms` = nf * nloc.
// A centre whose type is outside 0..ntypes-1 gets NaN rows (the caller checks types first).

// env = (R - davg) / dstd
template <typename T>
void env_mat_forward(const T* rij, const int32_t* nlist, const int32_t* atype, const T* davg,
                     const T* dstd, int64_t natoms, int64_t nnei, int64_t ntypes, double rcut,
                     double rcut_smth, T* env, const T* mask = nullptr);

// g_rij = sum_c mask g_env_c / dstd_c * dR_c/drij      (vector-Jacobian product)
template <typename T>
void env_mat_backward(const T* rij, const int32_t* nlist, const int32_t* atype, const T* dstd,
                      const T* g_env, int64_t natoms, int64_t nnei, int64_t ntypes, double rcut,
                      double rcut_smth, T* g_rij, const T* mask = nullptr);

// Derivatives of env_mat_backward along gg_rij:
//   gg_env_c = mask (dR_c/drij . gg_rij) / dstd_c                       (wrt g_env: the JVP)
//   g_rij    = sum_c mask g_env_c / dstd_c * (d2R_c/drij drij) . gg_rij  (wrt rij: the Hessian term)
// Either output pointer may be null (not computed).
template <typename T>
void env_mat_double_backward(const T* rij, const int32_t* nlist, const int32_t* atype,
                             const T* dstd, const T* g_env, const T* gg_rij, int64_t natoms,
                             int64_t nnei, int64_t ntypes, double rcut, double rcut_smth,
                             T* gg_env, T* g_rij, const T* mask = nullptr);

}  // namespace dpp
