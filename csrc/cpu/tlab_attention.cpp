// CPU implementation of aver_fast::tlab_attention(_train, _backward) on (..., L, D) tensors: one (batch, head)
// problem per task. tlab_attention keeps A_G, P = A_L^T and the intermediate in per-thread scratch (no (..., L, L)
// tensor is allocated); tlab_attention_train returns them for tlab_attention_backward, which recomputes nothing.
#include "common.h"

namespace aver_fast_cpu {
namespace {

struct Problems {
  int64_t N, L, D, mid;  // problems, and each one's sizes; mid: columns of the kept intermediate
};

Problems check(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  check_cpu_float(q, "q", -2);
  check_cpu_float(k, "k", -2);
  check_cpu_float(v, "v", -2);
  check_same_dtype(q, k, "q", "k");
  check_same_dtype(q, v, "q", "v");
  TORCH_CHECK(k.sizes() == q.sizes() && v.sizes() == q.sizes(), "aver_fast: q, k, v must have the same (..., L, D) "
              "shape, got ", q.sizes(), ", ", k.sizes(), ", ", v.sizes());
  const int64_t L = q.size(-2), D = q.size(-1);
  return {L * D > 0 ? q.numel() / (L * D) : 0, L, D, tlab_mid_cols(L, D)};
}

std::vector<int64_t> with_last(const at::Tensor& t, int64_t cols) {
  std::vector<int64_t> shape(t.sizes().begin(), t.sizes().end());
  shape.back() = cols;
  return shape;
}

// O, and with keep the (..., L, L) A_G and P and the (..., L, mid) intermediate.
std::vector<at::Tensor> run_forward(const at::Tensor& q_, const at::Tensor& k_, const at::Tensor& v_, double scale,
                                    bool keep) {
  const Problems p = check(q_, k_, v_);
  const auto q = q_.contiguous(), k = k_.contiguous(), v = v_.contiguous();
  const int64_t L = p.L, D = p.D, LL = L * L, LM = L * p.mid;
  auto out = at::empty_like(q);
  at::Tensor G, P, mid;
  if (keep) {
    G = at::empty(with_last(q, L), q.options());
    P = at::empty(with_last(q, L), q.options());
    mid = at::empty(with_last(q, p.mid), q.options());
  }
  AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "aver_fast_tlab_attention", [&] {
    const auto& kt = cpu_kernels().get<scalar_t>();
    const scalar_t *qp = q.data_ptr<scalar_t>(), *kp = k.data_ptr<scalar_t>(), *vp = v.data_ptr<scalar_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    const int64_t work = kt.tlab_forward_scratch(L, D);
    if (keep) {
      scalar_t *gp = G.data_ptr<scalar_t>(), *pp = P.data_ptr<scalar_t>(), *mp = mid.data_ptr<scalar_t>();
      for_each_problem<scalar_t>(p.N, work, [&](int64_t i, scalar_t* scratch) {
        const int64_t off = i * L * D;
        kt.tlab_forward(L, D, static_cast<scalar_t>(scale), qp + off, kp + off, vp + off, op + off, gp + i * LL,
                        pp + i * LL, mp + i * LM, scratch);
      });
    } else {
      for_each_problem<scalar_t>(p.N, 2 * LL + LM + work, [&](int64_t i, scalar_t* scratch) {
        const int64_t off = i * L * D;
        kt.tlab_forward(L, D, static_cast<scalar_t>(scale), qp + off, kp + off, vp + off, op + off, scratch,
                        scratch + LL, scratch + 2 * LL, scratch + 2 * LL + LM);
      });
    }
  });
  if (!keep) return {out};
  return {out, G, P, mid};
}

at::Tensor forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, double scale) {
  return run_forward(q, k, v, scale, false)[0];
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> forward_train(const at::Tensor& q, const at::Tensor& k,
                                                                         const at::Tensor& v, double scale) {
  auto r = run_forward(q, k, v, scale, true);
  return {r[0], r[1], r[2], r[3]};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> backward(const at::Tensor& grad_, const at::Tensor& q_,
                                                        const at::Tensor& k_, const at::Tensor& v_,
                                                        const at::Tensor& G_, const at::Tensor& P_,
                                                        const at::Tensor& mid_, double scale) {
  const Problems p = check(q_, k_, v_);
  check_cpu_float(grad_, "grad", -2);
  check_same_dtype(q_, grad_, "q", "grad");
  TORCH_CHECK(grad_.sizes() == q_.sizes(), "aver_fast: grad shape ", grad_.sizes(), " differs from q ", q_.sizes());
  const auto LL_shape = with_last(q_, p.L), mid_shape = with_last(q_, p.mid);
  TORCH_CHECK(G_.sizes() == at::IntArrayRef(LL_shape) && P_.sizes() == at::IntArrayRef(LL_shape) &&
                  mid_.sizes() == at::IntArrayRef(mid_shape) && G_.scalar_type() == q_.scalar_type() &&
                  P_.scalar_type() == q_.scalar_type() && mid_.scalar_type() == q_.scalar_type(),
              "aver_fast: tlab_attention_backward needs the saved tensors of tlab_attention_train for these inputs "
              "(A_G, P: ", at::IntArrayRef(LL_shape), ", mid: ", at::IntArrayRef(mid_shape), "), got ", G_.sizes(),
              ", ", P_.sizes(), ", ", mid_.sizes());
  const auto g = grad_.contiguous(), q = q_.contiguous(), k = k_.contiguous(), v = v_.contiguous();
  const auto G = G_.contiguous(), P = P_.contiguous(), mid = mid_.contiguous();
  const int64_t L = p.L, D = p.D, LL = L * L, LM = L * p.mid;
  auto dq = at::empty_like(q), dk = at::empty_like(q), dv = at::empty_like(q);
  AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "aver_fast_tlab_attention_backward", [&] {
    const auto& kt = cpu_kernels().get<scalar_t>();
    const scalar_t *gp = g.data_ptr<scalar_t>(), *qp = q.data_ptr<scalar_t>(), *kp = k.data_ptr<scalar_t>(),
                   *vp = v.data_ptr<scalar_t>(), *Gp = G.data_ptr<scalar_t>(), *Pp = P.data_ptr<scalar_t>(),
                   *mp = mid.data_ptr<scalar_t>();
    scalar_t *dqp = dq.data_ptr<scalar_t>(), *dkp = dk.data_ptr<scalar_t>(), *dvp = dv.data_ptr<scalar_t>();
    for_each_problem<scalar_t>(p.N, kt.tlab_backward_scratch(L, D), [&](int64_t i, scalar_t* scratch) {
      const int64_t off = i * L * D;
      kt.tlab_backward(L, D, static_cast<scalar_t>(scale), gp + off, qp + off, kp + off, vp + off, Gp + i * LL,
                       Pp + i * LL, mp + i * LM, dqp + off, dkp + off, dvp + off, scratch);
    });
  });
  return {dq, dk, dv};
}

}  // namespace
}  // namespace aver_fast_cpu

TORCH_LIBRARY_IMPL(aver_fast, CPU, m) {
  m.impl("tlab_attention", &aver_fast_cpu::forward);
  m.impl("tlab_attention_train", &aver_fast_cpu::forward_train);
  m.impl("tlab_attention_backward", &aver_fast_cpu::backward);
}
