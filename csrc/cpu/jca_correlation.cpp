// CPU implementation of aver_fast::jca_correlation(_backward). The op is GEMM-bound (x @ w is ~97% of its flops),
// so the products go to ATen's BLAS (MKL): XW = x @ w once over the whole batch (returned and kept for the
// backward, never recomputed), C = XW J^T batched, with the scale and tanh applied in one in-place pass; the backward
// forms dZ = s (1 - C^2) dC in one pass and needs no L x L temporaries beyond it.

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
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "aver_fast_jca_correlation", [&] {
    scalar_t* p = out.data_ptr<scalar_t>();
    const auto s = static_cast<scalar_t>(scale);
    at::parallel_for(0, out.numel(), 4096, [&](int64_t b, int64_t e) {  // scale and tanh in one pass, in place
      for (int64_t i = b; i < e; ++i) p[i] = std::tanh(p[i] * s);
    });
  });
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
  auto dz = at::empty_like(out);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "aver_fast_jca_correlation_backward", [&] {
    const auto g = grad.contiguous();
    const scalar_t *gp = g.data_ptr<scalar_t>(), *op = out.data_ptr<scalar_t>();
    scalar_t* dp = dz.data_ptr<scalar_t>();
    const auto s = static_cast<scalar_t>(scale);
    at::parallel_for(0, dz.numel(), 4096, [&](int64_t b, int64_t e) {  // dZ = s (1 - C^2) dC
      for (int64_t i = b; i < e; ++i) dp[i] = gp[i] * s * (scalar_t(1) - op[i] * op[i]);
    });
  });
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
