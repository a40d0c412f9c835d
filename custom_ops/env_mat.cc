// Environment matrix kernels; see env_mat.h for the formulas.
#include "env_mat.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace dpp {
namespace {

// The smooth switch and its first two derivatives in r. Clipping u to [0, 1] gives the
// right values outside the switching region too (w' and w'' vanish at u = 0 and u = 1).
template <typename T>
inline void switch_fn(T r, T rmin, T inv_width, T& w, T& dw, T& d2w) {
  const T u = std::min(std::max((r - rmin) * inv_width, T(0)), T(1));
  const T u2 = u * u;
  w = u2 * u * (T(-6) * u2 + T(15) * u - T(10)) + T(1);
  dw = T(-30) * u2 * (u - T(1)) * (u - T(1)) * inv_width;
  d2w = T(-60) * u * (T(2) * u - T(1)) * (u - T(1)) * inv_width * inv_width;
}

// Per-slot geometry: components, 1/r and the switch, zeroed for padded slots.
template <typename T>
struct Slot {
  T x, y, z, ir, w, dw, d2w;
};

template <typename T>
inline Slot<T> load_slot(const T* rij, bool used, T rmin, T inv_width) {
  Slot<T> s;
  s.x = rij[0];
  s.y = rij[1];
  s.z = rij[2];
  T r2 = s.x * s.x + s.y * s.y + s.z * s.z;
  r2 = used ? r2 : T(1);
  const T r = std::sqrt(r2);
  s.ir = T(1) / r;
  switch_fn(r, rmin, inv_width, s.w, s.dw, s.d2w);
  const T keep = used ? T(1) : T(0);
  s.w *= keep;
  s.dw *= keep;
  s.d2w *= keep;
  return s;
}

// Rows of excluded slots (mask 0) set to zero; the others unchanged (mask 1: no rounding).
// Every output of the three kernels is linear in the slot's own factor, so zeroing the row of
// the result is the masked formula exactly (R~ = mask (R - davg)/dstd and its derivatives).
template <typename T>
inline void apply_mask(const T* m, int64_t nnei, int width, T* out) {
  for (int64_t j = 0; j < nnei; ++j)
    if (m[j] == T(0))
      for (int c = 0; c < width; ++c) out[width * j + c] = T(0);
}

template <typename T>
inline bool type_ok(int32_t t, int64_t ntypes) {
  return t >= 0 && t < ntypes;
}

}  // namespace

template <typename T>
void env_mat_forward(const T* rij, const int32_t* nlist, const int32_t* atype, const T* davg,
                     const T* dstd, int64_t natoms, int64_t nnei, int64_t ntypes, double rcut,
                     double rcut_smth, T* env, const T* mask) {
  const T rmin = T(rcut_smth), inv_width = T(1.0 / (rcut - rcut_smth));
#pragma omp parallel for schedule(dynamic, 64)
  for (int64_t i = 0; i < natoms; ++i) {
    T* out = env + i * nnei * 4;
    if (!type_ok<T>(atype[i], ntypes)) {
      std::fill(out, out + nnei * 4, std::numeric_limits<T>::quiet_NaN());
      continue;
    }
    const T* avg = davg + atype[i] * nnei * 4;
    const T* std_ = dstd + atype[i] * nnei * 4;
    const T* r = rij + i * nnei * 3;
    const int32_t* nl = nlist + i * nnei;
#pragma omp simd
    for (int64_t j = 0; j < nnei; ++j) {
      const Slot<T> s = load_slot(r + 3 * j, nl[j] >= 0, rmin, inv_width);
      const T f1 = s.w * s.ir * s.ir;
      out[4 * j + 0] = (s.w * s.ir - avg[4 * j + 0]) / std_[4 * j + 0];
      out[4 * j + 1] = (f1 * s.x - avg[4 * j + 1]) / std_[4 * j + 1];
      out[4 * j + 2] = (f1 * s.y - avg[4 * j + 2]) / std_[4 * j + 2];
      out[4 * j + 3] = (f1 * s.z - avg[4 * j + 3]) / std_[4 * j + 3];
    }
    if (mask) apply_mask(mask + atype[i] * nnei, nnei, 4, out);
  }
}

template <typename T>
void env_mat_backward(const T* rij, const int32_t* nlist, const int32_t* atype, const T* dstd,
                      const T* g_env, int64_t natoms, int64_t nnei, int64_t ntypes, double rcut,
                      double rcut_smth, T* g_rij, const T* mask) {
  const T rmin = T(rcut_smth), inv_width = T(1.0 / (rcut - rcut_smth));
#pragma omp parallel for schedule(dynamic, 64)
  for (int64_t i = 0; i < natoms; ++i) {
    T* out = g_rij + i * nnei * 3;
    if (!type_ok<T>(atype[i], ntypes)) {
      std::fill(out, out + nnei * 3, std::numeric_limits<T>::quiet_NaN());
      continue;
    }
    const T* std_ = dstd + atype[i] * nnei * 4;
    const T* r = rij + i * nnei * 3;
    const T* ge = g_env + i * nnei * 4;
    const int32_t* nl = nlist + i * nnei;
#pragma omp simd
    for (int64_t j = 0; j < nnei; ++j) {
      const Slot<T> s = load_slot(r + 3 * j, nl[j] >= 0, rmin, inv_width);
      const T ir2 = s.ir * s.ir;
      const T f1 = s.w * ir2;
      const T a = (s.dw - s.w * s.ir) * ir2;              // f0'/r
      const T g = (s.dw - T(2) * s.w * s.ir) * ir2 * s.ir;  // f1'/r
      const T q0 = ge[4 * j + 0] / std_[4 * j + 0];
      const T qx = ge[4 * j + 1] / std_[4 * j + 1];
      const T qy = ge[4 * j + 2] / std_[4 * j + 2];
      const T qz = ge[4 * j + 3] / std_[4 * j + 3];
      const T coef = q0 * a + g * (qx * s.x + qy * s.y + qz * s.z);
      out[3 * j + 0] = coef * s.x + f1 * qx;
      out[3 * j + 1] = coef * s.y + f1 * qy;
      out[3 * j + 2] = coef * s.z + f1 * qz;
    }
    if (mask) apply_mask(mask + atype[i] * nnei, nnei, 3, out);
  }
}

template <typename T>
void env_mat_double_backward(const T* rij, const int32_t* nlist, const int32_t* atype,
                             const T* dstd, const T* g_env, const T* gg_rij, int64_t natoms,
                             int64_t nnei, int64_t ntypes, double rcut, double rcut_smth,
                             T* gg_env, T* g_rij, const T* mask) {
  const T rmin = T(rcut_smth), inv_width = T(1.0 / (rcut - rcut_smth));
#pragma omp parallel for schedule(dynamic, 64)
  for (int64_t i = 0; i < natoms; ++i) {
    if (!type_ok<T>(atype[i], ntypes)) {
      const T nan = std::numeric_limits<T>::quiet_NaN();
      if (gg_env) std::fill(gg_env + i * nnei * 4, gg_env + (i + 1) * nnei * 4, nan);
      if (g_rij) std::fill(g_rij + i * nnei * 3, g_rij + (i + 1) * nnei * 3, nan);
      continue;
    }
    const T* std_ = dstd + atype[i] * nnei * 4;
    const T* r = rij + i * nnei * 3;
    const T* v = gg_rij + i * nnei * 3;
    const int32_t* nl = nlist + i * nnei;
    if (gg_env) {
      T* out = gg_env + i * nnei * 4;
#pragma omp simd
      for (int64_t j = 0; j < nnei; ++j) {
        const Slot<T> s = load_slot(r + 3 * j, nl[j] >= 0, rmin, inv_width);
        const T ir2 = s.ir * s.ir;
        const T f1 = s.w * ir2;
        const T a = (s.dw - s.w * s.ir) * ir2;
        const T g = (s.dw - T(2) * s.w * s.ir) * ir2 * s.ir;
        const T vx = v[3 * j], vy = v[3 * j + 1], vz = v[3 * j + 2];
        const T xv = s.x * vx + s.y * vy + s.z * vz;
        out[4 * j + 0] = a * xv / std_[4 * j + 0];
        out[4 * j + 1] = (f1 * vx + g * s.x * xv) / std_[4 * j + 1];
        out[4 * j + 2] = (f1 * vy + g * s.y * xv) / std_[4 * j + 2];
        out[4 * j + 3] = (f1 * vz + g * s.z * xv) / std_[4 * j + 3];
      }
      if (mask) apply_mask(mask + atype[i] * nnei, nnei, 4, out);
    }
    if (g_rij) {
      T* out = g_rij + i * nnei * 3;
      const T* ge = g_env + i * nnei * 4;
#pragma omp simd
      for (int64_t j = 0; j < nnei; ++j) {
        const Slot<T> s = load_slot(r + 3 * j, nl[j] >= 0, rmin, inv_width);
        const T ir = s.ir, ir2 = ir * ir;
        const T a = (s.dw - s.w * ir) * ir2;
        const T g = (s.dw - T(2) * s.w * ir) * ir2 * ir;
        const T b = (s.d2w - T(3) * s.dw * ir + T(3) * s.w * ir2) * ir2 * ir;
        const T h = (s.d2w - T(5) * s.dw * ir + T(8) * s.w * ir2) * ir2 * ir2;
        const T q0 = ge[4 * j + 0] / std_[4 * j + 0];
        const T qx = ge[4 * j + 1] / std_[4 * j + 1];
        const T qy = ge[4 * j + 2] / std_[4 * j + 2];
        const T qz = ge[4 * j + 3] / std_[4 * j + 3];
        const T vx = v[3 * j], vy = v[3 * j + 1], vz = v[3 * j + 2];
        const T xv = s.x * vx + s.y * vy + s.z * vz;
        const T qv = qx * vx + qy * vy + qz * vz;
        const T qx_ = qx * s.x + qy * s.y + qz * s.z;
        // q0 (b (x.v) x + a v) + g ((q.v) x + (x.v) q + (q.x) v) + h (q.x)(x.v) x
        const T cx = q0 * b * xv + g * qv + h * qx_ * xv;  // coefficient of x
        const T cv = q0 * a + g * qx_;                      // coefficient of v
        const T cq = g * xv;                                // coefficient of q
        out[3 * j + 0] = cx * s.x + cv * vx + cq * qx;
        out[3 * j + 1] = cx * s.y + cv * vy + cq * qy;
        out[3 * j + 2] = cx * s.z + cv * vz + cq * qz;
      }
      if (mask) apply_mask(mask + atype[i] * nnei, nnei, 3, out);
    }
  }
}

#define DEEPMD_PADDLE_INSTANTIATE(T)                                                               \
  template void env_mat_forward<T>(const T*, const int32_t*, const int32_t*, const T*,            \
                                   const T*, int64_t, int64_t, int64_t, double, double, T*,       \
                                   const T*);                                                     \
  template void env_mat_backward<T>(const T*, const int32_t*, const int32_t*, const T*,           \
                                    const T*, int64_t, int64_t, int64_t, double, double, T*,      \
                                    const T*);                                                    \
  template void env_mat_double_backward<T>(const T*, const int32_t*, const int32_t*,              \
                                           const T*, const T*, const T*, int64_t, int64_t,        \
                                           int64_t, double, double, T*, T*, const T*);
DEEPMD_PADDLE_INSTANTIATE(float)
DEEPMD_PADDLE_INSTANTIATE(double)
#undef DEEPMD_PADDLE_INSTANTIATE

}  // namespace dpp
