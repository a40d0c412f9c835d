// The vector width of the register-blocked kernels: one machine register (64 bytes with
// AVX-512, 32 with AVX/AVX2, 16 otherwise), chosen at compile time (-march=native). Wider GCC
// vectors are split by the compiler, and the kernels' blocks of 8-16 accumulators then no longer
// fit the 16 registers of AVX2: on an AVX2-only machine the spills made the embedding kernels
// about 4x slower and a training step 2.2x slower.
#pragma once

#if defined(__AVX512F__)
#define DPP_VEC_BYTES 64
#elif defined(__AVX__)
#define DPP_VEC_BYTES 32
#else
#define DPP_VEC_BYTES 16
#endif

// float32 tanh on whole vectors without a division (tanh_vec.h): AVX2 + FMA registers only; on
// other targets the kernels keep their loops of tanh_fast (activation.h).
#if defined(__AVX2__) && defined(__FMA__) && DPP_VEC_BYTES == 32
#define DPP_TANH_VEC_F 1
#else
#define DPP_TANH_VEC_F 0
#endif

namespace dpp {
constexpr bool kTanhVecF = DPP_TANH_VEC_F;
typedef double VecD __attribute__((vector_size(DPP_VEC_BYTES)));
typedef float VecF __attribute__((vector_size(DPP_VEC_BYTES)));

// Vector registers the blocks may fill with accumulators (the rest hold operands).
constexpr int kVecRegs = DPP_VEC_BYTES == 64 ? 32 : 16;
}  // namespace dpp
