// Thread count for one kernel call (shared by the Paddle bindings; plain C++).
#pragma once
#include <cstdint>
#include <cstdlib>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace dpp {

// Threads for one kernel call, restored afterwards (the OpenMP runtime is shared with Paddle,
// whose import sets OMP_NUM_THREADS=1 before it starts). Small calls run serially: waking and
// then spin-waiting worker threads costs more than they save below ~1 ms of work.
// DEEPMD_PADDLE_NUM_THREADS caps the count; the default is every available core.
class KernelThreads {
 public:
  explicit KernelThreads(int64_t work, int64_t serial_below) {
#ifdef _OPENMP
    static const int n = [] {
      const char* env = std::getenv("DEEPMD_PADDLE_NUM_THREADS");
      const int v = env ? std::atoi(env) : 0;
      return v > 0 ? v : omp_get_num_procs();
    }();
    saved_ = omp_get_max_threads();
    omp_set_num_threads(work < serial_below ? 1 : n);
#endif
  }
  ~KernelThreads() {
#ifdef _OPENMP
    omp_set_num_threads(saved_);
#endif
  }
  KernelThreads(const KernelThreads&) = delete;
  KernelThreads& operator=(const KernelThreads&) = delete;

 private:
  int saved_ = 1;
};

}  // namespace dpp
