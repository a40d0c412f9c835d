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

namespace dpp {
// Vector registers the blocks may fill with accumulators (the rest hold operands).
constexpr int kVecRegs = DPP_VEC_BYTES == 64 ? 32 : 16;
}  // namespace dpp
