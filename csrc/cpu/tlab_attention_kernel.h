// TLAB global-local attention for one (batch, head) problem, forward and backward (see tlab_attention.cpp).
// O = A_G (A_L V), A_G = softmax_rows(S), A_L = softmax_rows(S^T), S = s Q K^T; Q, K, V, O are (L x D).
//
// A_L is kept in S's layout, P = A_L^T (softmax along S's columns), so neither softmax needs a transpose. The
// product is associated by shape (tlab_associate_left, isa.h): for L < D (the paper's short windows) as
// (A_G A_L) V, which costs 2 L^2 D + L^3 multiply-adds instead of 3 L^2 D, else as A_G (A_L V). The forward writes
// A_G, P and the intermediate (A_G A_L or A_L V) where the caller says: scratch when only O is wanted, saved tensors
// when a backward follows, which then costs 4 L^2 D + 2 L^3 (left) or 6 L^2 D instead of recomputing them.
#pragma once
#include "blas.h"

namespace aver_fast_cpu {
namespace AVER_ISA {

// Work space (entries) of tlab_forward_problem / tlab_backward_problem, besides A_G, P and mid.
inline int64_t tlab_forward_scratch(int64_t L, int64_t D) { return gemm_nt_scratch(L, maxv(L, D)) + 3 * L; }
inline int64_t tlab_backward_scratch(int64_t L, int64_t D) {
  return 2 * L * L + L * maxv(L, D) + gemm_nt_scratch(L, maxv(L, D)) + L;
}

// The largest of the n values at x, which also raise cmax to them (cmax[c] = max(cmax[c], x[c])).
template <typename T>
inline T row_max_into_columns(const T* x, int64_t n, T* cmax) {
  using V = Simd<T>;
  T mx = x[0];
  int64_t c = 0;
  if (n >= V::lanes) {
    typename V::vec vmx = V::load(x);
    for (; c + V::lanes <= n; c += V::lanes) {
      const typename V::vec e = V::load(x + c), m = V::load(cmax + c);
      vmx = e > vmx ? e : vmx;
      V::store(cmax + c, e > m ? e : m);
    }
    for (int64_t l = 0; l < V::lanes; ++l) mx = maxv(mx, vmx[l]);
  }
  for (; c < n; ++c) {
    mx = maxv(mx, x[c]);
    cmax[c] = maxv(cmax[c], x[c]);
  }
  return mx;
}

// Both softmaxes of S (L x L, given in P): G = softmax_rows(S), P = softmax_cols(S), in three passes over S instead
// of seven: both maxima, then both exponentials (each with its own shift) with their sums, then both scalings.
// buf: 3 L entries.
template <typename T>
inline void tlab_softmaxes(int64_t L, T* G, T* P, T* buf) {
  using V = Simd<T>;
  T* cmax = buf;        // then 1 / column sums
  T* csum = buf + L;
  T* rmax = buf + 2 * L;  // then 1 / row sums
  copy(P, L, cmax);
  for (int64_t r = 0; r < L; ++r) rmax[r] = row_max_into_columns(P + r * L, L, cmax);
  fill(csum, L, T(0));
  for (int64_t r = 0; r < L; ++r) {
    T* s = P + r * L;
    T* g = G + r * L;
    const typename V::vec shift = V::splat(rmax[r]);
    typename V::vec vsum = V::splat(T(0));
    int64_t c = 0;
    for (; c + V::lanes <= L; c += V::lanes) {
      const typename V::vec x = V::load(s + c);
      const typename V::vec eg = vexp<T>(x - shift), ep = vexp<T>(x - V::load(cmax + c));
      V::store(g + c, eg);
      V::store(s + c, ep);
      V::store(csum + c, V::load(csum + c) + ep);
      vsum += eg;
    }
    T sum = hsum<T, AVER_VEC_BYTES>(reinterpret_cast<const T*>(&vsum));
    for (; c < L; ++c) {
      g[c] = std::exp(s[c] - rmax[r]);
      s[c] = std::exp(s[c] - cmax[c]);
      csum[c] += s[c];
      sum += g[c];
    }
    rmax[r] = T(1) / sum;
  }
  for (int64_t c = 0; c < L; ++c) cmax[c] = T(1) / csum[c];
  for (int64_t r = 0; r < L; ++r) {
    T* g = G + r * L;
    T* s = P + r * L;
    const T inv = rmax[r];
#pragma omp simd
    for (int64_t c = 0; c < L; ++c) {
      g[c] *= inv;
      s[c] *= cmax[c];
    }
  }
}

// O, G = A_G and mid from the scores S = s Q K^T given in P (which becomes A_L^T); mid = A_G A_L (L x L) or A_L V
// (L x D). (Apart from tlab_forward_problem, so that S may come from another product, e.g. native bfloat16.)
template <typename T>
void tlab_forward_from_scores(int64_t L, int64_t D, const T* v, T* o, T* G, T* P, T* mid, T* scratch) {
  T* nt = scratch;
  T* colbuf = nt + gemm_nt_scratch(L, maxv(L, D));
  tlab_softmaxes(L, G, P, colbuf);
  if (tlab_associate_left(L, D)) {
    gemm_nt<T>(L, L, L, T(1), G, L, P, L, mid, L, false, nt);  // M = A_G A_L = G P^T
    gemm_nn<T>(L, D, L, T(1), mid, L, 1, v, D, o, D, false);   // O = M V
  } else {
    gemm_nn<T>(L, D, L, T(1), P, 1, L, v, D, mid, D, false);   // U = A_L V = P^T V
    gemm_nn<T>(L, D, L, T(1), G, L, 1, mid, D, o, D, false);   // O = A_G U
  }
}

// O, and G = A_G, P = A_L^T (L x L each), mid = A_G A_L (L x L) or A_L V (L x D).
template <typename T>
void tlab_forward_problem(int64_t L, int64_t D, T s, const T* q, const T* k, const T* v, T* o, T* G, T* P, T* mid,
                          T* scratch) {
  gemm_nt<T>(L, L, D, s, q, D, k, D, P, L, false, scratch);  // S = s Q K^T
  tlab_forward_from_scores(L, D, v, o, G, P, mid, scratch);
}

// Row softmax Y = softmax(X): dX = Y * (dY - rowsum(dY * Y)), written into dY (row-major, M x N).
template <typename T>
inline void softmax_rows_backward(int64_t M, int64_t N, const T* Y, int64_t ldy, T* dY, int64_t ldd) {
  for (int64_t i = 0; i < M; ++i) {
    const T* y = Y + i * ldy;
    T* d = dY + i * ldd;
    T dot = T(0);
#pragma omp simd reduction(+ : dot)
    for (int64_t j = 0; j < N; ++j) dot += d[j] * y[j];
#pragma omp simd
    for (int64_t j = 0; j < N; ++j) d[j] = y[j] * (d[j] - dot);
  }
}

// ---- One problem split by rows across threads: the phases of isa.h (TlabForwardPhase, TlabBackwardPhase) on rows
// [r0, r1), with the column reductions in partials: the forward's products as above, row block by row block, and
// the only backward (tlab_backward_problem runs it on one block).

inline int64_t tlab_rows_scratch(int64_t L, int64_t D) { return gemm_nt_scratch(L, maxv(L, D)); }

template <typename T>
void tlab_forward_rows(int phase, const TlabForwardRows<T>& a, int64_t r0, int64_t r1, T* part, T* scratch) {
  using V = Simd<T>;
  const int64_t L = a.L, D = a.D, R = r1 - r0;
  T* P = a.P + r0 * L;  // this block's rows
  T* G = a.G + r0 * L;
  if (phase == FWD_ROWS) {
    if (!a.scores_given) gemm_nt<T>(R, L, D, a.s, a.q + r0 * D, D, a.k, D, P, L, false, scratch);
    copy(P, L, part);
    for (int64_t r = 0; r < R; ++r) {
      const T* x = P + r * L;
      T* g = G + r * L;
      const T mx = row_max_into_columns(x, L, part);
      const typename V::vec shift = V::splat(mx);
      typename V::vec vsum = V::splat(T(0));
      int64_t c = 0;
      for (; c + V::lanes <= L; c += V::lanes) {
        const typename V::vec e = vexp<T>(V::load(x + c) - shift);
        V::store(g + c, e);
        vsum += e;
      }
      T sum = hsum<T, AVER_VEC_BYTES>(reinterpret_cast<const T*>(&vsum));
      for (; c < L; ++c) sum += (g[c] = std::exp(x[c] - mx));
      const T inv = T(1) / sum;
#pragma omp simd
      for (int64_t j = 0; j < L; ++j) g[j] *= inv;
    }
  } else if (phase == FWD_COL_EXP) {
    fill(part, L, T(0));
    for (int64_t r = 0; r < R; ++r) {
      T* x = P + r * L;
      int64_t c = 0;
      for (; c + V::lanes <= L; c += V::lanes) {
        const typename V::vec e = vexp<T>(V::load(x + c) - V::load(a.red + c));
        V::store(x + c, e);
        V::store(part + c, V::load(part + c) + e);
      }
      for (; c < L; ++c) part[c] += (x[c] = std::exp(x[c] - a.red[c]));
    }
  } else if (phase == FWD_COL_SCALE) {
    for (int64_t r = 0; r < R; ++r)
#pragma omp simd
      for (int64_t c = 0; c < L; ++c) P[r * L + c] *= a.red[c];
  } else if (tlab_associate_left(L, D)) {
    if (phase == FWD_PRODUCT) {
      gemm_nt<T>(R, L, L, T(1), G, L, a.P, L, a.mid + r0 * L, L, false, scratch);    // M = A_G A_L = G P^T
      gemm_nn<T>(R, D, L, T(1), a.mid + r0 * L, L, 1, a.v, D, a.o + r0 * D, D, false);  // O = M V
    }
  } else if (phase == FWD_PRODUCT) {
    gemm_nn<T>(R, D, L, T(1), a.P + r0, 1, L, a.v, D, a.mid + r0 * D, D, false);  // U = A_L V = P^T V
  } else if (phase == FWD_OUTPUT) {
    gemm_nn<T>(R, D, L, T(1), G, L, 1, a.mid, D, a.o + r0 * D, D, false);        // O = A_G U
  }
}

template <typename T>
void tlab_backward_rows(int phase, const TlabBackwardRows<T>& a, int64_t r0, int64_t r1, T* part, T* scratch) {
  const int64_t L = a.L, D = a.D, R = r1 - r0;
  const bool left = tlab_associate_left(L, D);
  T* dG = a.dG + r0 * L;
  T* dP = a.dP + r0 * L;
  const T* P = a.P + r0 * L;
  if (phase == BWD_ROWS) {
    if (left) {  // O = M V, M = A_G A_L
      gemm_nn<T>(R, D, L, T(1), a.mid + r0, 1, L, a.go, D, a.dv + r0 * D, D, false);          // dV = M^T dO
      gemm_nt<T>(R, L, D, T(1), a.go + r0 * D, D, a.v, D, a.dmid + r0 * L, L, false, scratch);  // dM = dO V^T
      gemm_nn<T>(R, L, L, T(1), a.dmid + r0 * L, L, 1, a.P, L, dG, L, false);                  // dA_G = dM P
    } else {     // O = A_G U, U = A_L V
      gemm_nt<T>(R, L, D, T(1), a.go + r0 * D, D, a.mid, D, dG, L, false, scratch);            // dA_G = dO U^T
      gemm_nn<T>(R, D, L, T(1), a.G + r0, 1, L, a.go, D, a.dmid + r0 * D, D, false);           // dU = A_G^T dO
    }
    softmax_rows_backward(R, L, a.G + r0 * L, L, dG, L);
  } else if (phase == BWD_PRODUCTS) {
    if (left) {
      gemm_nn<T>(R, L, L, T(1), a.dmid + r0, 1, L, a.G, L, dP, L, false);                     // dP = dM^T A_G
    } else {
      gemm_nn<T>(R, D, L, T(1), P, L, 1, a.dmid, D, a.dv + r0 * D, D, false);                  // dV = P dU
      gemm_nt<T>(R, L, D, T(1), a.v + r0 * D, D, a.dmid, D, dP, L, false, scratch);            // dP = V dU^T
    }
    fill(part, L, T(0));
    for (int64_t r = 0; r < R; ++r)
#pragma omp simd
      for (int64_t c = 0; c < L; ++c) part[c] += dP[r * L + c] * P[r * L + c];
  } else if (phase == BWD_DQ) {
    for (int64_t r = 0; r < R; ++r)
#pragma omp simd
      for (int64_t c = 0; c < L; ++c) dG[r * L + c] += P[r * L + c] * (dP[r * L + c] - a.red[c]);
    gemm_nn<T>(R, D, L, a.s, dG, L, 1, a.k, D, a.dq + r0 * D, D, false);   // dQ = s dS K
  } else if (phase == BWD_DK) {
    gemm_nn<T>(R, D, L, a.s, a.dG + r0, 1, L, a.q, D, a.dk + r0 * D, D, false);  // dK = s dS^T Q
  }
}

// dQ = s dS K, dK = s dS^T Q with dS = dS_G + dS_L, from the forward's G, P and mid: the phases above on one block
// of all L rows (its column sums are then the whole problem's).
template <typename T>
void tlab_backward_problem(int64_t L, int64_t D, T s, const T* go, const T* q, const T* k, const T* v, const T* G,
                           const T* P, const T* mid, T* dq, T* dk, T* dv, T* scratch) {
  T* dG = scratch;
  T* dP = dG + L * L;       // dA_L^T
  T* dmid = dP + L * L;     // dM (L x L) or dU (L x D)
  T* nt = dmid + L * maxv(L, D);
  T* colsum = nt + gemm_nt_scratch(L, maxv(L, D));
  const TlabBackwardRows<T> a{L, D, s, go, q, k, v, G, P, mid, dq, dk, dv, dG, dP, dmid, colsum};
  for (int phase = BWD_ROWS; phase < BWD_PHASES; ++phase) tlab_backward_rows(phase, a, 0, L, colsum, nt);
}

}  // namespace AVER_ISA
}  // namespace aver_fast_cpu
