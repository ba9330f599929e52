// Small dense kernels shared by the CPU ops: row-major, single-threaded, written so the compiler vectorises
// them for the ISA of the translation unit that includes this header (see isa_*.cpp). No ATen here.
#pragma once
#include <cmath>
#include <cstdint>
#if defined(__x86_64__) && AVER_VEC_BYTES >= 32  // (the translation unit's ISA has AVX: isa_avx2/avx512.cpp)
#include <immintrin.h>
#define AVER_TRANSPOSE_8X8 1
#endif

namespace aver_fast_cpu {
namespace AVER_ISA {

#ifdef AVER_TRANSPOSE_8X8
constexpr bool FAST_FLOAT_TRANSPOSE = true;  // float transposes go through 8 x 8 register blocks (transpose8x8)
#else
constexpr bool FAST_FLOAT_TRANSPOSE = false;
#endif

// Own tiny helpers instead of std::max/std::fill: every function in this namespace is compiled for one ISA, and
// out-of-line copies of std templates instantiated here could be picked by the linker for baseline code.
template <typename T> inline T maxv(T a, T b) { return a > b ? a : b; }
inline int64_t minv(int64_t a, int64_t b) { return a < b ? a : b; }
template <typename T> inline void fill(T* p, int64_t n, T v) { for (int64_t i = 0; i < n; ++i) p[i] = v; }
template <typename T> inline void copy(const T* src, int64_t n, T* dst) { for (int64_t i = 0; i < n; ++i) dst[i] = src[i]; }

// GCC/Clang vector extensions give explicit SIMD registers of the translation unit's ISA (AVER_VEC_BYTES).
template <typename T>
struct Simd {
  typedef T vec __attribute__((vector_size(AVER_VEC_BYTES), aligned(sizeof(T))));
  static constexpr int64_t lanes = AVER_VEC_BYTES / sizeof(T);
  static inline vec load(const T* p) { return *reinterpret_cast<const vec*>(p); }
  static inline void store(T* p, vec v) { *reinterpret_cast<vec*>(p) = v; }
  // x - 0 is x for every x (-0 included), so this folds to one broadcast; 0 + x would keep a scalar add (it turns
  // -0 into +0) and a register broadcast, two FP-pipe ops per element of A in the GEMM loop (~20% of AVX2 gemm_nn).
  static inline vec splat(T x) { return x - vec{}; }
};

// exp(x) for a whole vector: x = n ln2 + r, |r| <= ln2/2, e^r by its Taylor series (degree 7 in float, 13 in
// double: below one ulp), times 2^n built in the exponent bits. Inputs are clamped to the normal range, so very
// negative inputs give ~1e-38 (float) / ~1e-308 (double) instead of 0: harmless for softmax, which is its use.
template <typename T> struct VMathBits;
template <> struct VMathBits<float> {
  typedef int32_t ivec __attribute__((vector_size(AVER_VEC_BYTES)));
  static constexpr int mant = 23, bias = 127, degree = 7;
  static constexpr float lo = -87.0f, hi = 88.0f;
};
template <> struct VMathBits<double> {
  typedef int64_t ivec __attribute__((vector_size(AVER_VEC_BYTES)));
  static constexpr int mant = 52, bias = 1023, degree = 13;
  static constexpr double lo = -707.0, hi = 709.0;
};

template <typename T>
inline typename Simd<T>::vec vexp(typename Simd<T>::vec x) {
  using S = Simd<T>;
  using B = VMathBits<T>;
  typedef typename B::ivec ivec;
  x = x < S::splat(B::lo) ? S::splat(B::lo) : x;
  x = x > S::splat(B::hi) ? S::splat(B::hi) : x;
  // round(x / ln2) with the 1.5 * 2^mant trick: the integer lands in the low mantissa bits of t.
  const T magic = T(1.5) * T(int64_t(1) << B::mant);
  const typename S::vec t = x * T(1.4426950408889634) + magic;
  const typename S::vec nf = t - magic;
  const ivec n = (ivec)t - (ivec)S::splat(magic);
  const typename S::vec r = (x - nf * T(0.693145751953125)) - nf * T(1.428606820309417232e-06);
  T c[B::degree + 1];
  c[0] = T(1);
  for (int d = 1; d <= B::degree; ++d) c[d] = c[d - 1] / T(d);
  typename S::vec p = S::splat(c[B::degree]);
  for (int d = B::degree - 1; d >= 0; --d) p = p * r + c[d];
  return p * (typename S::vec)((n + B::bias) << B::mant);
}

// 10 log10(x) of a vector of positive normal floats (Cephes logf: x = m 2^e, m in [sqrt(1/2), sqrt(2)), a degree-9
// polynomial in m - 1; about one ulp). Doubles go through std::log10 lane by lane.
inline Simd<float>::vec vdb(Simd<float>::vec x) {
  using S = Simd<float>;
  typedef VMathBits<float>::ivec ivec;
  const ivec i = (ivec)x;
  ivec e = ((i >> 23) & 0xff) - 126;
  S::vec m = (S::vec)((i & 0x807fffff) | 0x3f000000);  // [0.5, 1)
  const ivec small = m < S::splat(0.707106781186547524f);  // -1 where true
  e += small;
  m = m - 1.0f + (S::vec)((ivec)m & small);  // m < sqrt(1/2): 2m - 1, else m - 1
  const S::vec z = m * m;
  S::vec y = S::splat(7.0376836292e-2f);
  y = y * m - 1.1514610310e-1f;
  y = y * m + 1.1676998740e-1f;
  y = y * m - 1.2420140846e-1f;
  y = y * m + 1.4249322787e-1f;
  y = y * m - 1.6668057665e-1f;
  y = y * m + 2.0000714765e-1f;
  y = y * m - 2.4999993993e-1f;
  y = y * m + 3.3333331174e-1f;
  y = y * m * z;
  const float magic = 12582912.0f;  // 1.5 * 2^23: int -> float through the mantissa
  const S::vec ef = (S::vec)(e + (ivec)S::splat(magic)) - magic;
  y += ef * -2.12194440e-4f;
  y += z * -0.5f;
  const S::vec ln = m + y + ef * 0.693359375f;
  return ln * 4.342944819032518f;  // 10 / ln(10)
}
inline Simd<double>::vec vdb(Simd<double>::vec x) {
  for (int64_t l = 0; l < Simd<double>::lanes; ++l) x[l] = 10.0 * std::log10(x[l]);
  return x;
}

// Register tiles of the GEMM micro-kernels, sized to the translation unit's vector registers (32 with AVX-512, 16
// otherwise): gemm_nn keeps NN_ROWS x NN_VECS accumulators, gemm_nt's dot-product form NT_ROWS x NT_COLS.
#if AVER_VEC_BYTES >= 64
constexpr int NN_ROWS = 6, NN_VECS = 4, NT_ROWS = 4, NT_COLS = 4;
#else
constexpr int NN_ROWS = 4, NN_VECS = 2, NT_ROWS = 3, NT_COLS = 3;
#endif

// Micro-kernel: C[MR rows, NV vectors of columns] (=|+=) alpha * sum_k A(i, k) B[k, j], accumulators in registers.
template <typename T, int MR, int NV>
inline void gemm_tile(int64_t K, T alpha, const T* A, int64_t a_rs, int64_t a_cs, const T* B, int64_t ldb, T* C,
                      int64_t ldc, bool accumulate) {
  using S = Simd<T>;
  typename S::vec acc[MR][NV];
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = S::splat(T(0));
  for (int64_t k = 0; k < K; ++k) {
    const T* b = B + k * ldb;
    typename S::vec bv[NV];
    for (int v = 0; v < NV; ++v) bv[v] = S::load(b + v * S::lanes);
    for (int r = 0; r < MR; ++r) {
      const typename S::vec a = S::splat(A[r * a_rs + k * a_cs]);
      for (int v = 0; v < NV; ++v) acc[r][v] += a * bv[v];
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) {
      T* c = C + r * ldc + v * S::lanes;
      S::store(c, accumulate ? S::load(c) + alpha * acc[r][v] : alpha * acc[r][v]);
    }
}

// gemm_tile for the last `rows` (< MR) rows of a column block.
template <typename T, int MR, int NV>
inline void gemm_tile_rows(int64_t rows, int64_t K, T alpha, const T* A, int64_t a_rs, int64_t a_cs, const T* B,
                           int64_t ldb, T* C, int64_t ldc, bool accumulate) {
  if constexpr (MR > 0) {
    if (rows == MR) return gemm_tile<T, MR, NV>(K, alpha, A, a_rs, a_cs, B, ldb, C, ldc, accumulate);
    gemm_tile_rows<T, MR - 1, NV>(rows, K, alpha, A, a_rs, a_cs, B, ldb, C, ldc, accumulate);
  }
}

// One block of NV vectors of columns over all M rows.
template <typename T, int NV>
inline void gemm_column_block(int64_t M, int64_t K, T alpha, const T* A, int64_t a_rs, int64_t a_cs, const T* B,
                              int64_t ldb, T* C, int64_t ldc, bool accumulate) {
  int64_t i = 0;
  for (; i + NN_ROWS <= M; i += NN_ROWS)
    gemm_tile<T, NN_ROWS, NV>(K, alpha, A + i * a_rs, a_rs, a_cs, B, ldb, C + i * ldc, ldc, accumulate);
  if (i < M)
    gemm_tile_rows<T, NN_ROWS - 1, NV>(M - i, K, alpha, A + i * a_rs, a_rs, a_cs, B, ldb, C + i * ldc, ldc,
                                       accumulate);
}

// C (M x N) = alpha * op(A) (M x K) * B (K x N)  [+ C when accumulate].
// A(i, k) = A[i * a_rs + k * a_cs] (so A, A^T and strided views all work); B rows are contiguous (ldb).
template <typename T>
inline void gemm_nn(int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t a_rs, int64_t a_cs,
                    const T* B, int64_t ldb, T* C, int64_t ldc, bool accumulate) {
  constexpr int64_t VL = Simd<T>::lanes;
  int64_t j = 0;
  for (; j + NN_VECS * VL <= N; j += NN_VECS * VL)
    gemm_column_block<T, NN_VECS>(M, K, alpha, A, a_rs, a_cs, B + j, ldb, C + j, ldc, accumulate);
  for (; j + VL <= N; j += VL)
    gemm_column_block<T, 1>(M, K, alpha, A, a_rs, a_cs, B + j, ldb, C + j, ldc, accumulate);
  if (j < N) {  // fewer than one vector of columns left: scalar axpy form
    for (int64_t i = 0; i < M; ++i) {
      T* crow = C + i * ldc;
      T tmp[Simd<T>::lanes] = {};
      for (int64_t k = 0; k < K; ++k) {
        const T x = A[i * a_rs + k * a_cs];
        const T* b = B + k * ldb;
        for (int64_t c = j; c < N; ++c) tmp[c - j] += x * b[c];
      }
      for (int64_t c = j; c < N; ++c) crow[c] = accumulate ? crow[c] + alpha * tmp[c - j] : alpha * tmp[c - j];
    }
  }
}

// Sum of a vector's lanes, halving the vector down to 16 bytes (a few adds and extracts, in a fixed order).
template <typename T, int BYTES>
inline T hsum(const T* lanes) {
  if constexpr (BYTES <= 16) {
    T s = T(0);
    for (int l = 0; l < int(BYTES / sizeof(T)); ++l) s += lanes[l];
    return s;
  } else {
    typedef T half __attribute__((vector_size(BYTES / 2), aligned(sizeof(T))));
    half h = *reinterpret_cast<const half*>(lanes) + *reinterpret_cast<const half*>(lanes + BYTES / 2 / sizeof(T));
    return hsum<T, BYTES / 2>(reinterpret_cast<const T*>(&h));
  }
}

// Dot-product micro-kernel: C[MR x NR] (=|+=) alpha * A[MR rows] . B[NR rows], both along contiguous k: vector
// partial sums in registers, reduced once per element at the end (the k tail in scalar arithmetic).
template <typename T, int MR, int NR>
inline void dot_tile(int64_t K, T alpha, const T* A, int64_t lda, const T* B, int64_t ldb, T* C, int64_t ldc,
                     bool accumulate) {
  using S = Simd<T>;
  typename S::vec acc[MR][NR];
  for (int r = 0; r < MR; ++r)
    for (int c = 0; c < NR; ++c) acc[r][c] = S::splat(T(0));
  int64_t k = 0;
  for (; k + S::lanes <= K; k += S::lanes) {
    typename S::vec a[MR], b[NR];
    for (int r = 0; r < MR; ++r) a[r] = S::load(A + r * lda + k);
    for (int c = 0; c < NR; ++c) b[c] = S::load(B + c * ldb + k);
    for (int r = 0; r < MR; ++r)
      for (int c = 0; c < NR; ++c) acc[r][c] += a[r] * b[c];
  }
  for (int r = 0; r < MR; ++r)
    for (int c = 0; c < NR; ++c) {
      T s = hsum<T, AVER_VEC_BYTES>(reinterpret_cast<const T*>(&acc[r][c]));
      for (int64_t t = k; t < K; ++t) s += A[r * lda + t] * B[c * ldb + t];
      T* out = C + r * ldc + c;
      *out = accumulate ? *out + alpha * s : alpha * s;
    }
}

// dst (c1 - c0 x r1 - r0) = src[r0:r1, c0:c1]^T, element by element in 16 x 16 blocks.
template <typename T>
inline void transpose_scalar(int64_t r0, int64_t r1, int64_t c0, int64_t c1, const T* src, int64_t lds, T* dst,
                             int64_t ldd) {
  constexpr int64_t BS = 16;
  for (int64_t rb = r0; rb < r1; rb += BS)
    for (int64_t cb = c0; cb < c1; cb += BS) {
      const int64_t re = minv(r1, rb + BS), ce = minv(c1, cb + BS);
      for (int64_t c = cb; c < ce; ++c)
        for (int64_t r = rb; r < re; ++r) dst[c * ldd + r] = src[r * lds + c];
    }
}

#ifdef AVER_TRANSPOSE_8X8
// One 8 x 8 float block in registers: unpack pairs, shuffle quads, swap 128-bit halves (24 instructions instead of
// 64 scalar moves).
inline void transpose8x8(const float* src, int64_t lds, float* dst, int64_t ldd) {
  __m256 r[8], t[8];
  for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + i * lds);
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    r[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
    r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
    r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  for (int i = 0; i < 4; ++i) {
    _mm256_storeu_ps(dst + i * ldd, _mm256_permute2f128_ps(r[i], r[i + 4], 0x20));
    _mm256_storeu_ps(dst + (i + 4) * ldd, _mm256_permute2f128_ps(r[i], r[i + 4], 0x31));
  }
}
#endif

// dst (cols x rows) = src (rows x cols)^T, src row stride lds, dst row stride ldd.
template <typename T>
inline void transpose(int64_t rows, int64_t cols, const T* src, int64_t lds, T* dst, int64_t ldd) {
  int64_t r8 = 0, c8 = 0;  // the part done in 8 x 8 register blocks
#ifdef AVER_TRANSPOSE_8X8
  if constexpr (sizeof(T) == sizeof(float)) {
    r8 = rows & ~int64_t(7);
    c8 = cols & ~int64_t(7);
    for (int64_t c = 0; c < c8; c += 8)
      for (int64_t r = 0; r < r8; r += 8)
        transpose8x8(reinterpret_cast<const float*>(src + r * lds + c), lds,
                     reinterpret_cast<float*>(dst + c * ldd + r), ldd);
  }
#endif
  transpose_scalar(int64_t(0), r8, c8, cols, src, lds, dst, ldd);
  transpose_scalar(r8, rows, int64_t(0), cols, src, lds, dst, ldd);
}

// Entries of scratch gemm_nt may need: B transposed.
inline int64_t gemm_nt_scratch(int64_t N, int64_t K) { return N * K; }

// C (M x N) = alpha * A (M x K) * B^T, B given as (N x K) rows  [+ C when accumulate]. B^T goes to scratch
// (gemm_nt_scratch entries) and gemm_nn runs where the transpose costs less than the dot-product tiles' reductions
// (about M log2(lanes) ops per element against N K moves), and for float wherever B^T's rows are whole vectors (at
// least 16 floats): its transpose then runs in register blocks, and gemm_nn's tiles beat the dot tiles from K = 32
// (measured, AVX2 and AVX-512: 16 x 16 x 256 in 0.90x/0.71x the time, 16 x 16 x 64 in 0.55x/0.38x). Elsewhere
// dot-product tiles.
template <typename T>
inline void gemm_nt(int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda, const T* B, int64_t ldb, T* C,
                    int64_t ldc, bool accumulate, T* scratch) {
  constexpr int64_t VL = Simd<T>::lanes;
  constexpr int64_t LOG2_VL = VL >= 16 ? 4 : VL >= 8 ? 3 : VL >= 4 ? 2 : 1;
  constexpr bool fast_transpose = FAST_FLOAT_TRANSPOSE && sizeof(T) == sizeof(float);
  if (M * LOG2_VL > K || (fast_transpose && N % VL == 0 && N >= 16)) {
    transpose(N, K, B, ldb, scratch, N);
    return gemm_nn(M, N, K, alpha, A, lda, int64_t(1), scratch, N, C, ldc, accumulate);
  }
  int64_t i = 0;
  for (; i + NT_ROWS <= M; i += NT_ROWS) {
    int64_t j = 0;
    for (; j + NT_COLS <= N; j += NT_COLS)
      dot_tile<T, NT_ROWS, NT_COLS>(K, alpha, A + i * lda, lda, B + j * ldb, ldb, C + i * ldc + j, ldc, accumulate);
    for (; j < N; ++j)
      dot_tile<T, NT_ROWS, 1>(K, alpha, A + i * lda, lda, B + j * ldb, ldb, C + i * ldc + j, ldc, accumulate);
  }
  for (; i < M; ++i) {
    int64_t j = 0;
    for (; j + NT_COLS <= N; j += NT_COLS)
      dot_tile<T, 1, NT_COLS>(K, alpha, A + i * lda, lda, B + j * ldb, ldb, C + i * ldc + j, ldc, accumulate);
    for (; j < N; ++j)
      dot_tile<T, 1, 1>(K, alpha, A + i * lda, lda, B + j * ldb, ldb, C + i * ldc + j, ldc, accumulate);
  }
}

}  // namespace AVER_ISA
}  // namespace aver_fast_cpu
