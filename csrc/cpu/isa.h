// Runtime choice of the instruction set for the CPU kernels. The kernel headers (blas.h, *_kernel.h) are compiled
// once per ISA (isa_default.cpp, isa_avx2.cpp, isa_avx512.cpp); the op files call them through this table.
#pragma once
#include <cstdint>
#include <string>

#include "log_mel_plan.h"

namespace aver_fast_cpu {

// TLAB keeps, per (L x D) problem, A_G and P = A_L^T (L x L each) and one intermediate "mid": A_G A_L (L x L) when
// the product is associated as (A_G A_L) V, which is cheaper for L < D, else U = A_L V (L x D).
inline bool tlab_associate_left(int64_t L, int64_t D) { return L < D; }
inline int64_t tlab_mid_cols(int64_t L, int64_t D) { return tlab_associate_left(L, D) ? L : D; }

// One problem split by rows across threads (tlab_attention.cpp, row_blocks: calls with at most half as many problems
// as threads). Each phase runs on row blocks [r0, r1) of every problem; between phases the blocks' column partials
// (`part`, L entries per block) are combined into `red`: after FWD_ROWS their maximum, after FWD_COL_EXP 1 / their
// sum, after BWD_PRODUCTS their sum.
enum TlabForwardPhase : int {
  FWD_ROWS,       // S rows = s Q K^T (unless given), G rows = their softmax; part: S's column maxima over the rows
  FWD_COL_EXP,    // P rows = exp(S - red); part: their column sums
  FWD_COL_SCALE,  // P rows *= red (= 1 / column sums): P = A_L^T
  FWD_PRODUCT,    // left: mid rows = G P^T rows, O rows = mid rows V; right: mid rows = (P^T V) rows
  FWD_OUTPUT,     // right: O rows = G rows mid; left: nothing
  FWD_PHASES
};
enum TlabBackwardPhase : int {
  BWD_ROWS,       // dG rows (through the row softmax); dmid rows (right: dU) and, left, dV rows
  BWD_PRODUCTS,   // dP rows = dA_L^T rows (right: and dV rows); part: column sums of dP * P
  BWD_DQ,         // dP rows through the column softmax (red: those sums), dS = dG + dP into dG, dQ rows
  BWD_DK,         // dK rows = s (dS^T Q) rows
  BWD_PHASES
};

template <typename T>
struct TlabForwardRows {
  int64_t L, D;
  T s;
  const T *q, *k, *v;  // (L x D)
  T *o, *G, *P, *mid;  // O (L x D), A_G and P (L x L; P holds S before FWD_ROWS when scores_given), mid
  bool scores_given;   // S already in P (native bfloat16 products), FWD_ROWS only takes the softmax
  const T* red;
};
template <typename T>
struct TlabBackwardRows {
  int64_t L, D;
  T s;
  const T *go, *q, *k, *v, *G, *P, *mid;  // dO, inputs and the forward's kept A_G, P, mid
  T *dq, *dk, *dv, *dG, *dP, *dmid;       // gradients, and L x L, L x L, L x mid work space shared by the blocks
  const T* red;
};

template <typename T>
struct KernelTable {
  int64_t (*tlab_forward_scratch)(int64_t L, int64_t D);
  int64_t (*tlab_backward_scratch)(int64_t L, int64_t D);
  void (*tlab_forward)(int64_t L, int64_t D, T s, const T* q, const T* k, const T* v, T* o, T* G, T* P, T* mid,
                       T* scratch);
  void (*tlab_forward_from_scores)(int64_t L, int64_t D, const T* v, T* o, T* G, T* P, T* mid, T* scratch);
  void (*tlab_backward)(int64_t L, int64_t D, T s, const T* go, const T* q, const T* k, const T* v, const T* G,
                        const T* P, const T* mid, T* dq, T* dk, T* dv, T* scratch);
  int64_t (*tlab_rows_scratch)(int64_t L, int64_t D);  // per block, for both of the following
  void (*tlab_forward_rows)(int phase, const TlabForwardRows<T>& a, int64_t r0, int64_t r1, T* part, T* scratch);
  void (*tlab_backward_rows)(int phase, const TlabBackwardRows<T>& a, int64_t r0, int64_t r1, T* part, T* scratch);
  int64_t (*mel_scratch)(int64_t n_fft);
  void (*mel_block)(const MelPlan<T>& p, const T* wav, int64_t t0, int64_t nt, T* out, T* scratch);
};

// C (M x N) = alpha * A B^T from bfloat16 rows (A: M x K, B: N x K, K contiguous; the raw 16-bit values),
// multiplied natively with float32 accumulation (AVX512-BF16's vdpbf16ps).
using GemmNtBf16 = void (*)(int64_t M, int64_t N, int64_t K, float alpha, const uint16_t* A, int64_t lda,
                            const uint16_t* B, int64_t ldb, float* C, int64_t ldc);

struct Kernels {
  const char* name;
  KernelTable<float> f32;
  KernelTable<double> f64;
  GemmNtBf16 gemm_nt_bf16;  // nullptr where this build or CPU has no native bfloat16 dot products
  template <typename T> const KernelTable<T>& get() const;
};
template <> inline const KernelTable<float>& Kernels::get<float>() const { return f32; }
template <> inline const KernelTable<double>& Kernels::get<double>() const { return f64; }

const Kernels* kernels_default();
const Kernels* kernels_avx2();    // nullptr where not compiled (non-x86)
const Kernels* kernels_avx512();  // nullptr where not compiled (non-x86)

// The kernels in use: the best the CPU supports, or $AVER_FAST_CPU_ISA (default|avx2|avx512) read once.
const Kernels& cpu_kernels();
// Force an ISA ("" = best available); returns the name now in use. Raises if the CPU cannot run it.
std::string set_cpu_isa(const std::string& name);
// The native bfloat16 dot products of the kernels in use, or nullptr: none in this build or CPU, or
// $AVER_FAST_CPU_LOW_PRECISION=0 (read at each call: the forced "no native bfloat16" path).
GemmNtBf16 native_bf16_dot();

}  // namespace aver_fast_cpu
