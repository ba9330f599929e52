// ATen-side helpers shared by the CPU op files: argument checks and the per-thread problem loop.
#pragma once
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <memory>

#include "isa.h"

namespace aver_fast_cpu {

inline void check_cpu_float(const at::Tensor& t, const char* name, int64_t dim) {
  TORCH_CHECK(t.device().is_cpu(), "aver_fast: ", name, " must be a CPU tensor, got ", t.device());
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, "aver_fast: ", name,
              " must be float32 or float64, got ", t.scalar_type());
  TORCH_CHECK(t.dim() == dim, "aver_fast: ", name, " must have ", dim, " dimensions, got ", t.sizes());
}

inline void check_same_dtype(const at::Tensor& a, const at::Tensor& b, const char* na, const char* nb) {
  TORCH_CHECK(a.scalar_type() == b.scalar_type(), "aver_fast: ", nb, " has dtype ", b.scalar_type(), " but ", na,
              " has dtype ", a.scalar_type());
}

// Runs fn(i, scratch) for i in [0, n) over at::parallel_for, with one scratch buffer of `scratch` entries per
// worker chunk (problems are independent, so results do not depend on the thread count).
template <typename T, typename Fn>
void for_each_problem(int64_t n, int64_t scratch, Fn&& fn) {
  at::parallel_for(0, n, 1, [&](int64_t begin, int64_t end) {
    std::unique_ptr<T[]> buf(new T[scratch > 0 ? scratch : 1]);
    for (int64_t i = begin; i < end; ++i) fn(i, buf.get());
  });
}

}  // namespace aver_fast_cpu
