// CPU implementation of aver_fast::tlab_attention(_train, _backward) on (..., L, D) tensors: one (batch, head) problem
// per task, or, where a call has at most half as many problems as threads, each problem's rows split into blocks run as
// the phases of isa.h (row_blocks). tlab_attention keeps A_G, P = A_L^T and the intermediate in per-thread scratch (no
// (..., L, L) tensor is allocated); tlab_attention_train returns them for tlab_attention_backward, which recomputes
// nothing. bfloat16/float16 are computed in float32 inside: each problem's inputs are converted into the thread's
// scratch, its outputs rounded back (the kept A_G, P and intermediate stay float32); where the CPU multiplies bfloat16
// natively (AVX512-BF16), S = s Q K^T of bfloat16 inputs is computed from them directly, accumulating in float32: the
// same products, as the inputs are already bfloat16.
#include <algorithm>

#include "common.h"

namespace aver_fast_cpu {
namespace {

constexpr int64_t NATIVE_BF16_MIN_D = 128;  // 4 native dot instructions per score, then one reduction

struct Problems {
  int64_t N, L, D, mid;  // problems, and each one's sizes; mid: columns of the kept intermediate
};

Problems check(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  check_cpu_floating(q, "q", 2);
  check_cpu_floating(k, "k", 2);
  check_cpu_floating(v, "v", 2);
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

// Row blocks per problem: a call with at most half as many problems as threads splits each problem's rows across
// the threads it would leave idle (blocks of SPLIT_MIN_ROWS rows or more), for problems of SPLIT_MIN_WORK
// multiply-adds (L^2 D) or more; below that the phases' extra fork-joins cost more than they save.
constexpr int64_t SPLIT_MIN_ROWS = 16;
constexpr int64_t SPLIT_MIN_WORK = int64_t(1) << 18;

int64_t row_blocks(const Problems& p) {
  const int64_t threads = at::get_num_threads();
  if (p.N == 0 || 2 * p.N > threads || p.L * p.L * p.D < SPLIT_MIN_WORK) return 1;
  const int64_t blocks = threads / p.N, most = p.L / SPLIT_MIN_ROWS;
  return blocks < most ? blocks : most;
}

// Rows per block (the last block may be shorter, and blocks past the end empty).
int64_t block_rows(const Problems& p, int64_t blocks) { return (p.L + blocks - 1) / blocks; }

// Runs phase(problem, r0, r1, part, scratch) on every row block [r0, r1) of every problem in parallel; part: that
// block's L column partials in parts (problem-major, `blocks` per problem), for combine.
template <typename T, typename Phase>
void over_row_blocks(const Problems& p, int64_t blocks, int64_t scratch, T* parts, Phase&& phase) {
  const int64_t rows = block_rows(p, blocks);
  for_each_problem<T>(p.N * blocks, scratch, [&](int64_t t, T* buf) {
    const int64_t r0 = (t % blocks) * rows, r1 = std::min(p.L, r0 + rows);
    if (r0 < r1) phase(t / blocks, r0, r1, parts + t * p.L, buf);
  });
}

// red (L per problem) = the maximum (or the sum, then 1 / it when invert) of each problem's blocks' partials, in
// block order (so the result depends on the block count only).
template <typename T>
void combine(const Problems& p, int64_t blocks, const T* parts, T* red, bool max, bool invert) {
  const int64_t rows = block_rows(p, blocks), used = (p.L + rows - 1) / rows;  // the non-empty blocks
  for (int64_t i = 0; i < p.N; ++i) {
    const T* part = parts + i * blocks * p.L;
    T* out = red + i * p.L;
    std::copy(part, part + p.L, out);
    for (int64_t b = 1; b < used; ++b)
      for (int64_t c = 0; c < p.L; ++c)
        out[c] = max ? std::max(out[c], part[b * p.L + c]) : out[c] + part[b * p.L + c];
    if (invert)
      for (int64_t c = 0; c < p.L; ++c) out[c] = T(1) / out[c];
  }
}

// The n values at src as the compute type, in buf (or src itself when no conversion is needed). bfloat16 by its
// bits (the high half of a float32), in a loop the compiler vectorises.
template <typename S, typename T>
const T* widen(const S* src, int64_t n, T* buf) {
  if constexpr (std::is_same_v<S, T>) {
    return src;
  } else if constexpr (std::is_same_v<S, c10::BFloat16>) {
    const uint16_t* bits = reinterpret_cast<const uint16_t*>(src);
    for (int64_t j = 0; j < n; ++j) {
      const uint32_t u = uint32_t(bits[j]) << 16;
      __builtin_memcpy(buf + j, &u, sizeof(u));
    }
    return buf;
  } else {
    for (int64_t j = 0; j < n; ++j) buf[j] = static_cast<T>(src[j]);
    return buf;
  }
}

// The n compute-type values at src rounded into dst (bfloat16: to nearest even, NaN kept, as c10 rounds).
template <typename S, typename T>
void narrow(const T* src, int64_t n, S* dst) {
  if constexpr (std::is_same_v<S, c10::BFloat16>) {
    uint16_t* bits = reinterpret_cast<uint16_t*>(dst);
    for (int64_t j = 0; j < n; ++j) {
      uint32_t u;
      __builtin_memcpy(&u, src + j, sizeof(u));
      const uint16_t rounded = uint16_t((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
      bits[j] = src[j] != src[j] ? uint16_t(0x7FC0) : rounded;
    }
  } else if constexpr (!std::is_same_v<S, T>) {
    for (int64_t j = 0; j < n; ++j) dst[j] = static_cast<S>(src[j]);
  }
}

template <typename S>
void forward_typed(const Problems& p, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                   at::Tensor& out, at::Tensor* kept, double scale) {
  using T = compute_t<S>;
  constexpr bool cast = !std::is_same_v<S, T>;
  const auto& kt = cpu_kernels().get<T>();
  const int64_t L = p.L, D = p.D, LD = L * D, LL = L * L, LM = L * p.mid;
  const int64_t io = cast ? 4 * LD : 0, own = kept ? 0 : 2 * LL + LM;
  const S *qp = q.data_ptr<S>(), *kp = k.data_ptr<S>(), *vp = v.data_ptr<S>();
  S* op = out.data_ptr<S>();
  T *gp = nullptr, *pp = nullptr, *mp = nullptr;
  if (kept) {
    gp = kept[0].data_ptr<T>();
    pp = kept[1].data_ptr<T>();
    mp = kept[2].data_ptr<T>();
  }
  GemmNtBf16 dot = nullptr;  // native bfloat16 Q K^T where its rows are long enough to outweigh the reductions
  if constexpr (std::is_same_v<S, c10::BFloat16>) dot = D >= NATIVE_BF16_MIN_D ? native_bf16_dot() : nullptr;
  for_each_problem<T>(p.N, io + own + kt.tlab_forward_scratch(L, D), [&](int64_t i, T* scratch) {
    T* s = scratch;
    const T* vi = widen(vp + i * LD, LD, s + 2 * LD);
    T* oi;
    if constexpr (cast) oi = s + 3 * LD; else oi = op + i * LD;
    s += io;
    T *G = s, *P = s + LL, *M = s + 2 * LL;
    if (kept) {
      G = gp + i * LL;
      P = pp + i * LL;
      M = mp + i * LM;
    }
    if constexpr (std::is_same_v<S, c10::BFloat16>) {
      if (dot != nullptr) {  // S natively from the bfloat16 rows, then everything else as below
        dot(L, L, D, static_cast<float>(scale), reinterpret_cast<const uint16_t*>(qp + i * LD), D,
            reinterpret_cast<const uint16_t*>(kp + i * LD), D, P, L);
        kt.tlab_forward_from_scores(L, D, vi, oi, G, P, M, s + own);
        narrow(oi, LD, op + i * LD);
        return;
      }
    }
    const T* qi = widen(qp + i * LD, LD, scratch);
    const T* ki = widen(kp + i * LD, LD, scratch + LD);
    kt.tlab_forward(L, D, static_cast<T>(scale), qi, ki, vi, oi, G, P, M, s + own);
    narrow(oi, LD, op + i * LD);
  });
}

// forward_typed with each problem's rows split into `blocks` blocks (see row_blocks) on compute-dtype tensors;
// bf16q/bf16k: the bfloat16 inputs where S is computed natively from them, else nullptr.
template <typename T>
void forward_split(const Problems& p, int64_t blocks, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                   at::Tensor& out, at::Tensor* kept, double scale, const at::Tensor* bf16q, const at::Tensor* bf16k) {
  const auto& kt = cpu_kernels().get<T>();
  const int64_t L = p.L, D = p.D, LD = L * D, LL = L * L, LM = L * p.mid;
  at::Tensor G, P, M;
  if (kept) {
    G = kept[0], P = kept[1], M = kept[2];
  } else {
    const auto opts = q.options();
    G = at::empty({p.N, LL}, opts), P = at::empty({p.N, LL}, opts), M = at::empty({p.N, LM}, opts);
  }
  std::vector<T> parts(p.N * blocks * L), red(p.N * L);
  const GemmNtBf16 dot = bf16q ? native_bf16_dot() : nullptr;
  const T *qp = q.data_ptr<T>(), *kp = k.data_ptr<T>(), *vp = v.data_ptr<T>();
  T *op = out.data_ptr<T>(), *gp = G.data_ptr<T>(), *pp = P.data_ptr<T>(), *mp = M.data_ptr<T>();
  auto args = [&](int64_t i) {
    return TlabForwardRows<T>{L, D, static_cast<T>(scale), qp + i * LD, kp + i * LD, vp + i * LD, op + i * LD,
                              gp + i * LL, pp + i * LL, mp + i * LM, dot != nullptr, red.data() + i * L};
  };
  const int last = tlab_associate_left(L, D) ? FWD_PRODUCT : FWD_OUTPUT;
  for (int phase = FWD_ROWS; phase <= last; ++phase) {
    over_row_blocks<T>(p, blocks, kt.tlab_rows_scratch(L, D), parts.data(),
                       [&](int64_t i, int64_t r0, int64_t r1, T* part, T* buf) {
      if constexpr (std::is_same_v<T, float>) {
        if (phase == FWD_ROWS && dot != nullptr)  // S natively from the bfloat16 rows
          dot(r1 - r0, L, D, static_cast<float>(scale),
              reinterpret_cast<const uint16_t*>(bf16q->data_ptr<c10::BFloat16>()) + (i * L + r0) * D, D,
              reinterpret_cast<const uint16_t*>(bf16k->data_ptr<c10::BFloat16>()) + i * LD, D,
              pp + i * LL + r0 * L, L);
      }
      kt.tlab_forward_rows(phase, args(i), r0, r1, part, buf);
    });
    if (phase == FWD_ROWS) combine(p, blocks, parts.data(), red.data(), true, false);
    if (phase == FWD_COL_EXP) combine(p, blocks, parts.data(), red.data(), false, true);
  }
}

// O, and with keep the (..., L, L) A_G and P and the (..., L, mid) intermediate (in the compute dtype).
std::vector<at::Tensor> run_forward(const at::Tensor& q_, const at::Tensor& k_, const at::Tensor& v_, double scale,
                                    bool keep) {
  const Problems p = check(q_, k_, v_);
  const auto q = q_.contiguous(), k = k_.contiguous(), v = v_.contiguous();
  auto out = at::empty_like(q);
  at::Tensor kept[3];
  if (keep) {
    const auto opts = q.options().dtype(compute_dtype(q.scalar_type()));
    kept[0] = at::empty(with_last(q, p.L), opts);
    kept[1] = at::empty(with_last(q, p.L), opts);
    kept[2] = at::empty(with_last(q, p.mid), opts);
  }
  const int64_t blocks = row_blocks(p);
  if (blocks > 1) {  // in the compute dtype: the conversions are cheap against a problem this large
    const auto dtype = compute_dtype(q.scalar_type());
    const bool native = q.scalar_type() == at::kBFloat16 && p.D >= NATIVE_BF16_MIN_D && native_bf16_dot();
    const auto qc = q.to(dtype), kc = k.to(dtype), vc = v.to(dtype);
    auto oc = dtype == q.scalar_type() ? out : at::empty_like(qc);
    AT_DISPATCH_FLOATING_TYPES(dtype, "aver_fast_tlab_attention", [&] {
      forward_split<scalar_t>(p, blocks, qc, kc, vc, oc, keep ? kept : nullptr, scale, native ? &q : nullptr,
                              native ? &k : nullptr);
    });
    if (!oc.is_same(out)) out.copy_(oc);
  } else {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, q.scalar_type(), "aver_fast_tlab_attention", [&] {
      forward_typed<scalar_t>(p, q, k, v, out, keep ? kept : nullptr, scale);
    });
  }
  if (!keep) return {out};
  return {out, kept[0], kept[1], kept[2]};
}

at::Tensor forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, double scale) {
  return run_forward(q, k, v, scale, false)[0];
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> forward_train(const at::Tensor& q, const at::Tensor& k,
                                                                         const at::Tensor& v, double scale) {
  auto r = run_forward(q, k, v, scale, true);
  return {r[0], r[1], r[2], r[3]};
}

template <typename S>
void backward_typed(const Problems& p, const at::Tensor& g, const at::Tensor& q, const at::Tensor& k,
                    const at::Tensor& v, const at::Tensor& G, const at::Tensor& P, const at::Tensor& mid,
                    at::Tensor& dq, at::Tensor& dk, at::Tensor& dv, double scale) {
  using T = compute_t<S>;
  constexpr bool cast = !std::is_same_v<S, T>;
  const auto& kt = cpu_kernels().get<T>();
  const int64_t L = p.L, D = p.D, LD = L * D, LL = L * L, LM = L * p.mid;
  const int64_t io = cast ? 7 * LD : 0;
  const S *gp = g.data_ptr<S>(), *qp = q.data_ptr<S>(), *kp = k.data_ptr<S>(), *vp = v.data_ptr<S>();
  const T *Gp = G.data_ptr<T>(), *Pp = P.data_ptr<T>(), *mp = mid.data_ptr<T>();
  S *dqp = dq.data_ptr<S>(), *dkp = dk.data_ptr<S>(), *dvp = dv.data_ptr<S>();
  for_each_problem<T>(p.N, io + kt.tlab_backward_scratch(L, D), [&](int64_t i, T* scratch) {
    const int64_t off = i * LD;
    const T* gi = widen(gp + off, LD, scratch);
    const T* qi = widen(qp + off, LD, scratch + LD);
    const T* ki = widen(kp + off, LD, scratch + 2 * LD);
    const T* vi = widen(vp + off, LD, scratch + 3 * LD);
    T *dqi, *dki, *dvi;
    if constexpr (cast) {
      dqi = scratch + 4 * LD;
      dki = scratch + 5 * LD;
      dvi = scratch + 6 * LD;
    } else {
      dqi = dqp + off;
      dki = dkp + off;
      dvi = dvp + off;
    }
    kt.tlab_backward(L, D, static_cast<T>(scale), gi, qi, ki, vi, Gp + i * LL, Pp + i * LL, mp + i * LM, dqi, dki,
                     dvi, scratch + io);
    narrow(dqi, LD, dqp + off);
    narrow(dki, LD, dkp + off);
    narrow(dvi, LD, dvp + off);
  });
}

// backward_typed with each problem's rows split into `blocks` blocks (see row_blocks), on compute-dtype tensors.
template <typename T>
void backward_split(const Problems& p, int64_t blocks, const at::Tensor& g, const at::Tensor& q, const at::Tensor& k,
                    const at::Tensor& v, const at::Tensor& G, const at::Tensor& P, const at::Tensor& mid,
                    at::Tensor& dq, at::Tensor& dk, at::Tensor& dv, double scale) {
  const auto& kt = cpu_kernels().get<T>();
  const int64_t L = p.L, D = p.D, LD = L * D, LL = L * L, LM = L * p.mid;
  const auto dG = at::empty({p.N, LL}, q.options()), dP = at::empty({p.N, LL}, q.options());
  const auto dmid = at::empty({p.N, LM}, q.options());
  std::vector<T> parts(p.N * blocks * L), red(p.N * L);
  const T *gp = g.data_ptr<T>(), *qp = q.data_ptr<T>(), *kp = k.data_ptr<T>(), *vp = v.data_ptr<T>();
  const T *Gp = G.data_ptr<T>(), *Pp = P.data_ptr<T>(), *mp = mid.data_ptr<T>();
  T *dqp = dq.data_ptr<T>(), *dkp = dk.data_ptr<T>(), *dvp = dv.data_ptr<T>();
  T *dGp = dG.data_ptr<T>(), *dPp = dP.data_ptr<T>(), *dmp = dmid.data_ptr<T>();
  for (int phase = BWD_ROWS; phase < BWD_PHASES; ++phase) {
    over_row_blocks<T>(p, blocks, kt.tlab_rows_scratch(L, D), parts.data(),
                       [&](int64_t i, int64_t r0, int64_t r1, T* part, T* buf) {
      const TlabBackwardRows<T> a{L, D, static_cast<T>(scale), gp + i * LD, qp + i * LD, kp + i * LD, vp + i * LD,
                                  Gp + i * LL, Pp + i * LL, mp + i * LM, dqp + i * LD, dkp + i * LD, dvp + i * LD,
                                  dGp + i * LL, dPp + i * LL, dmp + i * LM, red.data() + i * L};
      kt.tlab_backward_rows(phase, a, r0, r1, part, buf);
    });
    if (phase == BWD_PRODUCTS) combine(p, blocks, parts.data(), red.data(), false, false);
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> backward(const at::Tensor& grad_, const at::Tensor& q_,
                                                        const at::Tensor& k_, const at::Tensor& v_,
                                                        const at::Tensor& G_, const at::Tensor& P_,
                                                        const at::Tensor& mid_, double scale) {
  const Problems p = check(q_, k_, v_);
  check_cpu_floating(grad_, "grad", 2);
  check_same_dtype(q_, grad_, "q", "grad");
  TORCH_CHECK(grad_.sizes() == q_.sizes(), "aver_fast: grad shape ", grad_.sizes(), " differs from q ", q_.sizes());
  const auto LL_shape = with_last(q_, p.L), mid_shape = with_last(q_, p.mid);
  const auto kept = compute_dtype(q_.scalar_type());
  TORCH_CHECK(G_.sizes() == at::IntArrayRef(LL_shape) && P_.sizes() == at::IntArrayRef(LL_shape) &&
                  mid_.sizes() == at::IntArrayRef(mid_shape) && G_.scalar_type() == kept &&
                  P_.scalar_type() == kept && mid_.scalar_type() == kept,
              "aver_fast: tlab_attention_backward needs the saved tensors of tlab_attention_train for these inputs "
              "(A_G, P: ", at::IntArrayRef(LL_shape), ", mid: ", at::IntArrayRef(mid_shape), ", ", kept, "), got ",
              G_.sizes(), ", ", P_.sizes(), ", ", mid_.sizes());
  const auto g = grad_.contiguous(), q = q_.contiguous(), k = k_.contiguous(), v = v_.contiguous();
  const auto G = G_.contiguous(), P = P_.contiguous(), mid = mid_.contiguous();
  const int64_t blocks = row_blocks(p);
  if (blocks > 1) {  // in the compute dtype, as in run_forward
    const auto gc = g.to(kept), qc = q.to(kept), kc = k.to(kept), vc = v.to(kept);
    auto dq = at::empty_like(qc), dk = at::empty_like(qc), dv = at::empty_like(qc);
    AT_DISPATCH_FLOATING_TYPES(kept, "aver_fast_tlab_attention_backward", [&] {
      backward_split<scalar_t>(p, blocks, gc, qc, kc, vc, G, P, mid, dq, dk, dv, scale);
    });
    return {dq.to(q.scalar_type()), dk.to(q.scalar_type()), dv.to(q.scalar_type())};
  }
  auto dq = at::empty_like(q), dk = at::empty_like(q), dv = at::empty_like(q);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, q.scalar_type(), "aver_fast_tlab_attention_backward",
                                  [&] { backward_typed<scalar_t>(p, g, q, k, v, G, P, mid, dq, dk, dv, scale); });
  return {dq, dk, dv};
}

}  // namespace
}  // namespace aver_fast_cpu

TORCH_LIBRARY_IMPL(aver_fast, CPU, m) {
  m.impl("tlab_attention", &aver_fast_cpu::forward);
  m.impl("tlab_attention_train", &aver_fast_cpu::forward_train);
  m.impl("tlab_attention_backward", &aver_fast_cpu::backward);
}
