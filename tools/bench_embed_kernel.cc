// One-thread microbenchmark of the se_e2_a embedding forward kernels (custom_ops/embed_net.h:
// embed_net, G and dG/ds, as inference runs it; embed_train_net.h: train_forward, the same with
// the tape kept, as se_a_embed_tape runs it). Water-sized work: nets 1 -> 25 -> 50 -> 100 (tanh,
// resnet), 192 atoms x sel {46, 92} = 26,496 rows, random weights. Prints per kernel and precision
// the median of the repetitions in ms and GFLOP/s (2 x the multiply-adds of the G and dG/ds passes
// over the real, unpadded widths) and a checksum of the outputs (equal before/after = bit for bit).
//
//   g++ -O3 -march=native -fopenmp -fno-math-errno -fno-trapping-math -I custom_ops \
//       tools/bench_embed_kernel.cc -o /tmp/bench_embed && taskset -c 1 /tmp/bench_embed [reps]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "embed_train_net.h"

using namespace dpp;

template <typename T>
struct Net {
  std::vector<std::vector<T>> w, b;
  EmbedNet<T> net;
  Net(const std::vector<int>& widths, unsigned seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<double> nd(0.0, 1.0);
    for (size_t l = 0; l + 1 < widths.size(); ++l) {
      const int ni = widths[l], no = widths[l + 1];
      w.emplace_back(size_t(ni) * no);
      b.emplace_back(no);
      for (auto& x : w.back()) x = T(nd(rng) / std::sqrt(double(ni + no)));
      for (auto& x : b.back()) x = T(nd(rng));
    }
    for (size_t l = 0; l + 1 < widths.size(); ++l)
      net.push_back({w[l].data(), b[l].data(), nullptr, widths[l], widths[l + 1]});
  }
};

template <typename T>
void run(int reps, int nat) {
  const std::vector<int> widths = {1, 25, 50, 100}, sel = {46, 92};
  Net<T> net(widths, 7);
  const auto packed = pack_net(net.net);
  TrainNet<T> tn(net.net);
  std::mt19937 rng(11);
  std::uniform_real_distribution<double> ud(0.0, 1.5);
  int maxsel = 0, nnei = 0;
  for (int s : sel) maxsel = std::max(maxsel, s), nnei += s;
  std::vector<T> env(size_t(nat) * nnei * 4);
  for (auto& x : env) x = T(ud(rng));
  int64_t wsize = 0;
  for (const auto& P : packed) wsize = std::max<int64_t>(wsize, int64_t(maxsel) * P.nop);
  const int ldg = packed.back().nop;
  std::vector<T> work(4 * wsize), g(size_t(maxsel) * ldg), dg(size_t(maxsel) * ldg);
  TrainTape<T> tape(tn, maxsel);
  double macs = 0;
  for (size_t l = 0; l + 1 < widths.size(); ++l) macs += double(widths[l]) * widths[l + 1];
  const double flops = 2.0 * 2.0 * macs * nat * nnei;  // G and dG/ds
  for (int kernel = 0; kernel < 2; ++kernel) {
    std::vector<double> ms;
    double sum = 0;
    for (int rep = 0; rep < reps + 1; ++rep) {
      sum = 0;
      const auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < nat; ++i) {
        int off = 0;
        for (int s : sel) {
          const T* e = env.data() + (int64_t(i) * nnei + off) * 4;
          off += s;
          if (kernel == 0) {
            embed_net(packed, s, e, 4, g.data(), dg.data(), work.data(), wsize);
            sum += double(g[int64_t(s - 1) * ldg + 3]) + double(dg[5]);
          } else {
            train_forward(tn, s, e, tape);
            sum += double(tape.a.back()[int64_t(s - 1) * ldg + 3]) + double(tape.da.back()[5]);
          }
        }
      }
      const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (rep > 0) ms.push_back(dt * 1e3);  // (the first is a warm-up)
    }
    std::sort(ms.begin(), ms.end());
    const double med = ms[ms.size() / 2];
    std::printf("%-13s %-7s median %7.2f ms  %6.2f GFLOP/s  (min %.2f max %.2f ms)  checksum %.17g\n",
                kernel == 0 ? "embed_net" : "train_forward", sizeof(T) == 4 ? "float32" : "float64", med,
                flops / med * 1e-6, ms.front(), ms.back(), sum);
  }
}

int main(int argc, char** argv) {
  const int reps = argc > 1 ? std::atoi(argv[1]) : 9;
  run<float>(reps, 192);
  run<double>(reps, 192);
  return 0;
}
