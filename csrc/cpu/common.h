// ATen-side helpers shared by the CPU op files: argument checks and the per-thread problem loop.
#pragma once
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <memory>
#include <type_traits>
#include <vector>

#include "isa.h"

namespace aver_fast_cpu {

inline void check_cpu_float(const at::Tensor& t, const char* name, int64_t dim) {
  TORCH_CHECK(t.device().is_cpu(), "aver_fast: ", name, " must be a CPU tensor, got ", t.device());
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, "aver_fast: ", name,
              " must be float32 or float64, got ", t.scalar_type());
  TORCH_CHECK(t.dim() == dim, "aver_fast: ", name, " must have ", dim, " dimensions, got ", t.sizes());
}

// Like check_cpu_float, also admitting bfloat16/float16 (kernels that compute them in float32 themselves).
inline void check_cpu_floating(const at::Tensor& t, const char* name, int64_t min_dim) {
  TORCH_CHECK(t.device().is_cpu(), "aver_fast: ", name, " must be a CPU tensor, got ", t.device());
  const auto d = t.scalar_type();
  TORCH_CHECK(d == at::kFloat || d == at::kDouble || d == at::kBFloat16 || d == at::kHalf, "aver_fast: ", name,
              " must be float32, float64, bfloat16 or float16, got ", d);
  TORCH_CHECK(t.dim() >= min_dim, "aver_fast: ", name, " must have at least ", min_dim, " dimensions, got ",
              t.sizes());
}

// The dtype a kernel computes a storage dtype in: float64 stays, everything else is computed in float32.
template <typename S>
using compute_t = std::conditional_t<std::is_same_v<S, double>, double, float>;
inline at::ScalarType compute_dtype(at::ScalarType s) { return s == at::kDouble ? at::kDouble : at::kFloat; }

inline void check_same_dtype(const at::Tensor& a, const at::Tensor& b, const char* na, const char* nb) {
  TORCH_CHECK(a.scalar_type() == b.scalar_type(), "aver_fast: ", nb, " has dtype ", b.scalar_type(), " but ", na,
              " has dtype ", a.scalar_type());
}

// Runs fn(i, scratch) for i in [0, n) over at::parallel_for, with one scratch buffer of `scratch` entries per
// worker chunk (problems are independent, so results do not depend on how they are shared out). Buffers up to
// KEPT_SCRATCH_BYTES stay with their thread between calls (no allocation per call); larger ones are freed after it.
constexpr int64_t KEPT_SCRATCH_BYTES = int64_t(4) << 20;

template <typename T, typename Fn>
void for_each_problem(int64_t n, int64_t scratch, Fn&& fn) {
  const int64_t size = scratch > 0 ? scratch : 1;
  at::parallel_for(0, n, 1, [&](int64_t begin, int64_t end) {
    std::unique_ptr<T[]> own;
    T* buf;
    if (size * int64_t(sizeof(T)) <= KEPT_SCRATCH_BYTES) {
      thread_local std::vector<T> kept;
      if (int64_t(kept.size()) < size) kept.resize(size);
      buf = kept.data();
    } else {
      own.reset(new T[size]);
      buf = own.get();
    }
    for (int64_t i = begin; i < end; ++i) fn(i, buf);
  });
}

}  // namespace aver_fast_cpu
