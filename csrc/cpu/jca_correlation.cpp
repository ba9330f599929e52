// CPU implementation of aver_fast::jca_correlation(_backward). The op is GEMM-bound (x @ w is ~97% of its flops),
// so the products go to ATen's BLAS, as in the reference: XW = x @ w once over the whole batch (returned and kept for
// the backward, never recomputed), C = XW J^T batched, scale and tanh in place; the backward forms
// dZ = s (1 - C^2) dC and needs no L x L temporaries beyond it. Measured no faster than the reference, it runs only
// when requested (aver_fast/ops/jca_correlation.py).

#include <cmath>

#include "common.h"

namespace aver_fast_cpu {
namespace {

void check(const at::Tensor& x, const at::Tensor& w, const at::Tensor& j) {
  check_cpu_float(x, "x", 3);
  check_cpu_float(w, "w", 2);
  check_cpu_float(j, "j", 3);
  check_same_dtype(x, w, "x", "w");
  check_same_dtype(x, j, "x", "j");
  TORCH_CHECK(x.size(2) == w.size(0) && j.size(2) == w.size(1) && x.size(0) == j.size(0),
              "aver_fast: jca_correlation needs x (N, Lx, C), w (C, D), j (N, Lj, D); got ", x.sizes(), ", ",
              w.sizes(), ", ", j.sizes());
}

std::tuple<at::Tensor, at::Tensor> forward(const at::Tensor& x_, const at::Tensor& w_, const at::Tensor& j_,
                                           double scale) {
  check(x_, w_, j_);
  const auto x = x_.contiguous(), w = w_.contiguous(), j = j_.contiguous();
  const int64_t N = x.size(0), Lx = x.size(1), C = x.size(2), D = w.size(1);
  const auto xw = at::mm(x.view({N * Lx, C}), w).view({N, Lx, D});
  auto out = at::bmm(xw, j.transpose(1, 2));  // (N, Lx, Lj)
  out.mul_(scale).tanh_();
  return {out, xw};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> backward(const at::Tensor& grad, const at::Tensor& out_,
                                                        const at::Tensor& xw_, const at::Tensor& x_,
                                                        const at::Tensor& w_, const at::Tensor& j_, double scale) {
  check(x_, w_, j_);
  const auto x = x_.contiguous(), w = w_.contiguous(), j = j_.contiguous(), out = out_.contiguous();
  const int64_t N = x.size(0), Lx = x.size(1), C = x.size(2), D = w.size(1), Lj = j.size(1);
  TORCH_CHECK(grad.sizes() == out.sizes() && out.sizes() == at::IntArrayRef({N, Lx, Lj}),
              "aver_fast: jca_correlation_backward grad/out must be (N, Lx, Lj), got ", grad.sizes(), ", ",
              out.sizes());
  TORCH_CHECK(xw_.sizes() == at::IntArrayRef({N, Lx, D}), "aver_fast: xw must be (N, Lx, D), got ", xw_.sizes());
  check_same_dtype(x, xw_, "x", "xw");
  auto dz = out.square().neg_().add_(1).mul_(grad).mul_(scale);  // dZ = s (1 - C^2) dC
  const auto dxw = at::bmm(dz, j);                            // (N, Lx, D)
  auto dj = at::bmm(dz.transpose(1, 2), xw_.contiguous());    // (N, Lj, D)
  auto dx = at::mm(dxw.view({N * Lx, D}), w.t()).view({N, Lx, C});
  auto dw = at::mm(x.view({N * Lx, C}).t(), dxw.view({N * Lx, D}));
  return {dx, dw, dj};
}

}  // namespace
}  // namespace aver_fast_cpu

TORCH_LIBRARY_IMPL(aver_fast, CPU, m) {
  m.impl("jca_correlation", &aver_fast_cpu::forward);
  m.impl("jca_correlation_backward", &aver_fast_cpu::backward);
}
