// avx512 build of the CPU kernels (chosen at run time when the CPU supports it; see isa_default.cpp).
#include <cmath>
#include <cstdint>

#include "isa.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>  // before the target pragma (blas.h uses it): included under it, its intrinsics mismatch
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")
#define AVER_ISA avx512
#define AVER_VEC_BYTES 64
#include "isa_impl.h"
#pragma GCC pop_options

namespace aver_fast_cpu {
namespace avx512 {

#define AVER_BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

// One ROWS x COLS tile of GemmNtBf16: 32 bfloat16 pairs per instruction, the k tail masked to zero.
template <int ROWS, int COLS>
AVER_BF16_TARGET inline void bf16_dot_tile(int64_t K, float alpha, const uint16_t* A, int64_t lda, const uint16_t* B,
                                           int64_t ldb, float* C, int64_t ldc) {
  __m512 acc[ROWS][COLS];
  for (int r = 0; r < ROWS; ++r)
    for (int c = 0; c < COLS; ++c) acc[r][c] = _mm512_setzero_ps();
  for (int64_t k = 0; k < K; k += 32) {
    const __mmask32 mask = K - k >= 32 ? ~__mmask32(0) : static_cast<__mmask32>((uint64_t(1) << (K - k)) - 1);
    __m512i a[ROWS], b[COLS];
    for (int r = 0; r < ROWS; ++r) a[r] = _mm512_maskz_loadu_epi16(mask, A + r * lda + k);
    for (int c = 0; c < COLS; ++c) b[c] = _mm512_maskz_loadu_epi16(mask, B + c * ldb + k);
    for (int r = 0; r < ROWS; ++r)
      for (int c = 0; c < COLS; ++c) acc[r][c] = _mm512_dpbf16_ps(acc[r][c], (__m512bh)a[r], (__m512bh)b[c]);
  }
  for (int r = 0; r < ROWS; ++r)
    for (int c = 0; c < COLS; ++c) C[r * ldc + c] = alpha * _mm512_reduce_add_ps(acc[r][c]);
}

// GemmNtBf16 (isa.h): 4 x 4 tiles, single rows and columns at the edges.
AVER_BF16_TARGET void gemm_nt_bf16(int64_t M, int64_t N, int64_t K, float alpha, const uint16_t* A, int64_t lda,
                                   const uint16_t* B, int64_t ldb, float* C, int64_t ldc) {
  int64_t i = 0;
  for (; i + 4 <= M; i += 4) {
    int64_t j = 0;
    for (; j + 4 <= N; j += 4) bf16_dot_tile<4, 4>(K, alpha, A + i * lda, lda, B + j * ldb, ldb, C + i * ldc + j, ldc);
    for (; j < N; ++j) bf16_dot_tile<4, 1>(K, alpha, A + i * lda, lda, B + j * ldb, ldb, C + i * ldc + j, ldc);
  }
  for (; i < M; ++i) {
    int64_t j = 0;
    for (; j + 4 <= N; j += 4) bf16_dot_tile<1, 4>(K, alpha, A + i * lda, lda, B + j * ldb, ldb, C + i * ldc + j, ldc);
    for (; j < N; ++j) bf16_dot_tile<1, 1>(K, alpha, A + i * lda, lda, B + j * ldb, ldb, C + i * ldc + j, ldc);
  }
}

}  // namespace avx512

const Kernels* kernels_avx512() {
  __builtin_cpu_init();
  static const Kernels k{"avx512", avx512::make_table<float>(), avx512::make_table<double>(),
                         __builtin_cpu_supports("avx512bf16") ? &avx512::gemm_nt_bf16 : nullptr};
  return &k;
}
}  // namespace aver_fast_cpu
#else
namespace aver_fast_cpu {
const Kernels* kernels_avx512() { return nullptr; }
}  // namespace aver_fast_cpu
#endif
