// TLAB global-local attention for one (batch, head) problem, forward and backward (see tlab_attention.cpp).
// O = A_G (A_L V), A_G = softmax_rows(S), A_L = softmax_rows(S^T), S = s Q K^T; Q, K, V, O are (L x D).
#pragma once
#include "blas.h"

namespace aver_fast_cpu {
namespace AVER_ISA {

// Scratch entries needed by tlab_forward_problem / tlab_backward_problem.
inline int64_t tlab_forward_scratch(int64_t L, int64_t D) { return D * L + 3 * L * L + L * D + 2 * L; }
inline int64_t tlab_backward_scratch(int64_t L, int64_t D) { return 2 * D * L + 5 * L * L + 2 * L * D + 2 * L; }

// Shared first half: Kt = K^T, S = s Q Kt, G = softmax_rows(S), P = softmax over S's rows (P[j, i] = A_L[i, j]),
// U = A_L V.
template <typename T>
inline void tlab_scores(int64_t L, int64_t D, T s, const T* q, const T* k, const T* v, T* kt, T* S, T* G, T* P,
                        T* U, T* colbuf) {
  transpose(L, D, k, D, kt, L);
  gemm_nn<T>(L, L, D, s, q, D, 1, kt, L, S, L, false);
  copy(S, L * L, G);
  softmax_rows(L, L, G, L);
  softmax_cols(L, L, S, L, P, L, colbuf);
  gemm_nn<T>(L, D, L, T(1), P, 1, L, v, D, U, D, false);  // U[i] = sum_j A_L[i, j] V[j] = sum_j P[j, i] V[j]
}

template <typename T>
void tlab_forward_problem(int64_t L, int64_t D, T s, const T* q, const T* k, const T* v, T* o, T* scratch) {
  T* kt = scratch;
  T* S = kt + D * L;
  T* G = S + L * L;
  T* P = G + L * L;
  T* U = P + L * L;
  T* colbuf = U + L * D;
  tlab_scores(L, D, s, q, k, v, kt, S, G, P, U, colbuf);
  gemm_nn<T>(L, D, L, T(1), G, L, 1, U, D, o, D, false);  // O = A_G U
}

// dS of a row softmax Y = softmax(X): dX = Y * (dY - rowsum(dY * Y)), written into dY (row-major, M x N).
template <typename T>
inline void softmax_rows_backward(int64_t M, int64_t N, const T* Y, int64_t ldy, T* dY, int64_t ldd) {
  for (int64_t i = 0; i < M; ++i) {
    const T* y = Y + i * ldy;
    T* d = dY + i * ldd;
    T dot = T(0);
    for (int64_t j = 0; j < N; ++j) dot += d[j] * y[j];
#pragma omp simd
    for (int64_t j = 0; j < N; ++j) d[j] = y[j] * (d[j] - dot);
  }
}

// Column version of softmax_rows_backward: P = softmax over rows (along each column), dP -> dX in place.
template <typename T>
inline void softmax_cols_backward(int64_t M, int64_t N, const T* P, int64_t ldp, T* dP, int64_t ldd, T* colbuf) {
  for (int64_t c = 0; c < N; ++c) colbuf[c] = T(0);
  for (int64_t r = 0; r < M; ++r)
#pragma omp simd
    for (int64_t c = 0; c < N; ++c) colbuf[c] += dP[r * ldd + c] * P[r * ldp + c];
  for (int64_t r = 0; r < M; ++r)
#pragma omp simd
    for (int64_t c = 0; c < N; ++c) dP[r * ldd + c] = P[r * ldp + c] * (dP[r * ldd + c] - colbuf[c]);
}

// dQ = s dS K, dK = s dS^T Q, dV = A_L^T dU, dU = A_G^T dO; S, A_G, A_L, U are recomputed from q, k, v.
template <typename T>
void tlab_backward_problem(int64_t L, int64_t D, T s, const T* go, const T* q, const T* k, const T* v, T* dq,
                           T* dk, T* dv, T* scratch) {
  T* kt = scratch;
  T* ut = kt + D * L;
  T* S = ut + D * L;
  T* G = S + L * L;
  T* P = G + L * L;
  T* dS = P + L * L;
  T* dPt = dS + L * L;
  T* U = dPt + L * L;
  T* dU = U + L * D;
  T* colbuf = dU + L * D;
  tlab_scores(L, D, s, q, k, v, kt, S, G, P, U, colbuf);
  transpose(L, D, U, D, ut, L);
  gemm_nn<T>(L, L, D, T(1), go, D, 1, ut, L, dS, L, false);  // dA_G = dO U^T
  gemm_nn<T>(L, D, L, T(1), G, 1, L, go, D, dU, D, false);   // dU = A_G^T dO
  gemm_nn<T>(L, D, L, T(1), P, L, 1, dU, D, dv, D, false);   // dV[j] = sum_i A_L[i, j] dU[i] = sum_i P[j, i] dU[i]
  transpose(L, D, dU, D, ut, L);                               // ut <- dU^T
  gemm_nn<T>(L, L, D, T(1), v, D, 1, ut, L, dPt, L, false);  // dPt[j, i] = dA_L[i, j] = sum_d V[j, d] dU[i, d]
  softmax_rows_backward(L, L, G, L, dS, L);                   // dS <- dS from A_G
  softmax_cols_backward(L, L, P, L, dPt, L, colbuf);          // dPt <- dS from A_L (already in S's layout)
  for (int64_t e = 0; e < L * L; ++e) dS[e] += dPt[e];
  gemm_nn<T>(L, D, L, s, dS, L, 1, k, D, dq, D, false);      // dQ = s dS K
  gemm_nn<T>(L, D, L, s, dS, 1, L, q, D, dk, D, false);      // dK = s dS^T Q
}

}  // namespace AVER_ISA
}  // namespace aver_fast_cpu
