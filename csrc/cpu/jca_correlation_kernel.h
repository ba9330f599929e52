// JCA correlation for one batch item: C = tanh(s XW J^T), XW (Lx x D) precomputed by the caller (one GEMM for a
// chunk of items), J (Lj x D). Backward: dZ = s (1 - C^2) * dC, dXW = dZ J, dJ = dZ^T XW.
#pragma once
#include "blas.h"

namespace aver_fast_cpu {
namespace AVER_ISA {

inline int64_t jca_scratch(int64_t Lj, int64_t D) { return D * Lj; }

template <typename T>
void jca_forward_item(int64_t Lx, int64_t Lj, int64_t D, T s, const T* xw, const T* j, T* out, T* scratch) {
  T* jt = scratch;
  transpose(Lj, D, j, D, jt, Lj);
  gemm_nn<T>(Lx, Lj, D, s, xw, D, 1, jt, Lj, out, Lj, false);
  for (int64_t e = 0; e < Lx * Lj; ++e) out[e] = std::tanh(out[e]);
}

// dz (Lx x Lj) is overwritten with dZ; writes dxw (Lx x D) and dj (Lj x D).
template <typename T>
void jca_backward_item(int64_t Lx, int64_t Lj, int64_t D, T s, T* dz, const T* out, const T* xw, const T* j,
                       T* dxw, T* dj) {
#pragma omp simd
  for (int64_t e = 0; e < Lx * Lj; ++e) dz[e] *= s * (T(1) - out[e] * out[e]);
  gemm_nn<T>(Lx, D, Lj, T(1), dz, Lj, 1, j, D, dxw, D, false);  // dXW = dZ J
  gemm_nn<T>(Lj, D, Lx, T(1), dz, 1, Lj, xw, D, dj, D, false);  // dJ = dZ^T XW
}

}  // namespace AVER_ISA
}  // namespace aver_fast_cpu
