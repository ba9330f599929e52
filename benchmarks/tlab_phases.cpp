// Where the time of one TLAB problem goes on this CPU: each phase of csrc/cpu/tlab_attention_kernel.h timed alone,
// single-threaded, on the kernel headers themselves (not the installed extension). Build and run, from the checkout:
//   g++ -O3 -std=c++17 -mavx2 -mfma -DAVER_VEC_BYTES=32 -Icsrc benchmarks/tlab_phases.cpp -o /tmp/phases && /tmp/phases 16 256
//   (AVX-512: -mavx512f -mavx512vl -mavx512bw -mavx512dq -mavx2 -mfma -DAVER_VEC_BYTES=64)
// Arguments: L D [problems]. Prints microseconds per problem (fastest of 15 passes over the problems) and GFLOP/s.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#define AVER_ISA phases
#include "cpu/isa.h"
#include "cpu/tlab_attention_kernel.h"

using namespace aver_fast_cpu::phases;

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s L D [problems]\n", argv[0]);
    return 2;
  }
  const int64_t L = std::atoll(argv[1]), D = std::atoll(argv[2]), N = argc > 3 ? std::atoll(argv[3]) : 16;
  const int64_t LD = L * D, LL = L * L, M = aver_fast_cpu::tlab_mid_cols(L, D);
  std::vector<float> q(N * LD), k(N * LD), v(N * LD), o(N * LD), g(N * LD), dq(N * LD), dk(N * LD), dv(N * LD);
  std::vector<float> G(N * LL), P(N * LL), mid(N * L * M);
  std::mt19937 rng(0);
  std::normal_distribution<float> normal;
  for (auto* x : {&q, &k, &v, &g})
    for (auto& e : *x) e = normal(rng);
  std::vector<float> work(tlab_backward_scratch(L, D) + tlab_forward_scratch(L, D));
  float* nt = work.data();
  float* colbuf = nt + gemm_nt_scratch(L, maxv(L, D));
  std::vector<float> S(LL), T(L * maxv(L, D));
  const float s = 1.0f / std::sqrt(float(D));
  const double F = 2.0 * L * L * D;  // flops of one L x L x D product
  auto time = [&](const char* name, auto&& f, double flops) {
    double best = 1e9;
    for (int r = 0; r < 18; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      for (int64_t i = 0; i < N; ++i) f(i);
      const double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / N;
      if (r >= 3) best = std::min(best, t);  // three warm-up passes
    }
    std::printf("%-34s %9.2f us %8.1f GFLOP/s\n", name, best * 1e6, flops > 0 ? flops / best / 1e9 : 0.0);
  };
  std::printf("L=%lld D=%lld, %d-byte vectors, product associated %s\n", (long long)L, (long long)D, AVER_VEC_BYTES,
              aver_fast_cpu::tlab_associate_left(L, D) ? "(A_G A_L) V" : "A_G (A_L V)");
  time("S = s Q K^T", [&](int64_t i) { gemm_nt<float>(L, L, D, s, &q[i * LD], D, &k[i * LD], D, S.data(), L, false, nt); }, F);
  time("A_G and A_L^T (both softmaxes)", [&](int64_t i) {
    copy(S.data(), LL, &P[i * LL]);
    tlab_softmaxes(L, &G[i * LL], &P[i * LL], colbuf);
  }, 0);
  if (aver_fast_cpu::tlab_associate_left(L, D)) {
    time("M = A_G A_L", [&](int64_t i) { gemm_nt<float>(L, L, L, 1.f, &G[i * LL], L, &P[i * LL], L, &mid[i * LL], L, false, nt); }, 2.0 * L * L * L);
    time("O = M V", [&](int64_t i) { gemm_nn<float>(L, D, L, 1.f, &mid[i * LL], L, 1, &v[i * LD], D, &o[i * LD], D, false); }, F);
  } else {
    time("U = A_L V", [&](int64_t i) { gemm_nn<float>(L, D, L, 1.f, &P[i * LL], 1, L, &v[i * LD], D, T.data(), D, false); }, F);
    time("O = A_G U", [&](int64_t i) { gemm_nn<float>(L, D, L, 1.f, &G[i * LL], L, 1, T.data(), D, &o[i * LD], D, false); }, F);
  }
  const double fwd = aver_fast_cpu::tlab_associate_left(L, D) ? 2 * F + 2.0 * L * L * L : 3 * F;
  time("forward (all of the above)", [&](int64_t i) {
    tlab_forward_problem<float>(L, D, s, &q[i * LD], &k[i * LD], &v[i * LD], &o[i * LD], &G[i * LL], &P[i * LL],
                                &mid[i * L * M], nt);
  }, fwd);
  const double bwd = aver_fast_cpu::tlab_associate_left(L, D) ? 4 * F + 4.0 * L * L * L : 6 * F;
  time("backward (from the kept A_G, A_L^T, mid)", [&](int64_t i) {
    tlab_backward_problem<float>(L, D, s, &g[i * LD], &q[i * LD], &k[i * LD], &v[i * LD], &G[i * LL], &P[i * LL],
                                 &mid[i * L * M], &dq[i * LD], &dk[i * LD], &dv[i * LD], nt);
  }, bwd);
  return 0;
}
