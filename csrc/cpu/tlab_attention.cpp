// CPU implementation of aver_fast::tlab_attention(_backward): one (batch, head) problem per task, S = s Q K^T kept
// in per-thread scratch (no (..., L, L) tensor is allocated), backward recomputes S from q and k.
#include "common.h"

namespace aver_fast_cpu {
namespace {

void check(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  check_cpu_float(q, "q", 3);
  check_cpu_float(k, "k", 3);
  check_cpu_float(v, "v", 3);
  check_same_dtype(q, k, "q", "k");
  check_same_dtype(q, v, "q", "v");
  TORCH_CHECK(k.sizes() == q.sizes() && v.sizes() == q.sizes(), "aver_fast: q, k, v must have the same (N, L, D) "
              "shape, got ", q.sizes(), ", ", k.sizes(), ", ", v.sizes());
}

at::Tensor forward(const at::Tensor& q_, const at::Tensor& k_, const at::Tensor& v_, double scale) {
  check(q_, k_, v_);
  const auto q = q_.contiguous(), k = k_.contiguous(), v = v_.contiguous();
  const int64_t N = q.size(0), L = q.size(1), D = q.size(2);
  auto out = at::empty_like(q);
  AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "aver_fast_tlab_attention", [&] {
    const auto& kt = cpu_kernels().get<scalar_t>();
    const scalar_t *qp = q.data_ptr<scalar_t>(), *kp = k.data_ptr<scalar_t>(), *vp = v.data_ptr<scalar_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    for_each_problem<scalar_t>(N, kt.tlab_forward_scratch(L, D), [&](int64_t i, scalar_t* scratch) {
      const int64_t off = i * L * D;
      kt.tlab_forward(L, D, static_cast<scalar_t>(scale), qp + off, kp + off, vp + off, op + off, scratch);
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> backward(const at::Tensor& grad_, const at::Tensor& q_,
                                                        const at::Tensor& k_, const at::Tensor& v_, double scale) {
  check(q_, k_, v_);
  check_cpu_float(grad_, "grad", 3);
  check_same_dtype(q_, grad_, "q", "grad");
  TORCH_CHECK(grad_.sizes() == q_.sizes(), "aver_fast: grad shape ", grad_.sizes(), " differs from q ", q_.sizes());
  const auto g = grad_.contiguous(), q = q_.contiguous(), k = k_.contiguous(), v = v_.contiguous();
  const int64_t N = q.size(0), L = q.size(1), D = q.size(2);
  auto dq = at::empty_like(q), dk = at::empty_like(q), dv = at::empty_like(q);
  AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "aver_fast_tlab_attention_backward", [&] {
    const auto& kt = cpu_kernels().get<scalar_t>();
    const scalar_t *gp = g.data_ptr<scalar_t>(), *qp = q.data_ptr<scalar_t>(), *kp = k.data_ptr<scalar_t>(),
                   *vp = v.data_ptr<scalar_t>();
    scalar_t *dqp = dq.data_ptr<scalar_t>(), *dkp = dk.data_ptr<scalar_t>(), *dvp = dv.data_ptr<scalar_t>();
    for_each_problem<scalar_t>(N, kt.tlab_backward_scratch(L, D), [&](int64_t i, scalar_t* scratch) {
      const int64_t off = i * L * D;
      kt.tlab_backward(L, D, static_cast<scalar_t>(scale), gp + off, qp + off, kp + off, vp + off, dqp + off,
                       dkp + off, dvp + off, scratch);
    });
  });
  return {dq, dk, dv};
}

}  // namespace
}  // namespace aver_fast_cpu

TORCH_LIBRARY_IMPL(aver_fast, CPU, m) {
  m.impl("tlab_attention", &aver_fast_cpu::forward);
  m.impl("tlab_attention_backward", &aver_fast_cpu::backward);
}
