// CPU implementation of aver_fast::jca_correlation(_backward): XW = x @ w is one GEMM over the batch, computed once
// and returned for the backward; per item, C = tanh(s XW J^T) is produced with the scale and tanh fused, and the
// backward fuses the tanh/scale derivative into the per-item products.

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
  const int64_t N = x.size(0), Lx = x.size(1), C = x.size(2), D = w.size(1), Lj = j.size(1);
  const auto xw = at::mm(x.view({N * Lx, C}), w);  // (N Lx, D)
  auto out = at::empty({N, Lx, Lj}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "aver_fast_jca_correlation", [&] {
    const auto& kt = cpu_kernels().get<scalar_t>();
    const scalar_t *xwp = xw.data_ptr<scalar_t>(), *jp = j.data_ptr<scalar_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    for_each_problem<scalar_t>(N, kt.jca_scratch(Lj, D), [&](int64_t b, scalar_t* scratch) {
      kt.jca_forward(Lx, Lj, D, static_cast<scalar_t>(scale), xwp + b * Lx * D, jp + b * Lj * D,
                     op + b * Lx * Lj, scratch);
    });
  });
  return {out, xw.view({N, Lx, D})};
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
  auto dz = grad.contiguous().clone();
  const auto xw = xw_.contiguous();
  auto dxw = at::empty({N * Lx, D}, x.options());
  auto dj = at::empty_like(j);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "aver_fast_jca_correlation_backward", [&] {
    const auto& kt = cpu_kernels().get<scalar_t>();
    scalar_t *dzp = dz.data_ptr<scalar_t>(), *dxwp = dxw.data_ptr<scalar_t>(), *djp = dj.data_ptr<scalar_t>();
    const scalar_t *op = out.data_ptr<scalar_t>(), *xwp = xw.data_ptr<scalar_t>(), *jp = j.data_ptr<scalar_t>();
    for_each_problem<scalar_t>(N, 0, [&](int64_t b, scalar_t*) {
      kt.jca_backward(Lx, Lj, D, static_cast<scalar_t>(scale), dzp + b * Lx * Lj, op + b * Lx * Lj,
                      xwp + b * Lx * D, jp + b * Lj * D, dxwp + b * Lx * D, djp + b * Lj * D);
    });
  });
  auto dx = at::mm(dxw, w.t()).view({N, Lx, C});
  auto dw = at::mm(x.view({N * Lx, C}).t(), dxw);
  return {dx, dw, dj};
}

}  // namespace
}  // namespace aver_fast_cpu

TORCH_LIBRARY_IMPL(aver_fast, CPU, m) {
  m.impl("jca_correlation", &aver_fast_cpu::forward);
  m.impl("jca_correlation_backward", &aver_fast_cpu::backward);
}
