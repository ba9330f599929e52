// Log-mel for a block of frames of one waveform, frames vectorised across SIMD lanes:
// frames are read straight from the waveform (padding applied by index), windowed, transformed with a radix-2
// real FFT (an N/2-point complex FFT plus the real-input split), squared, projected on the mel filters using only
// their non-zero band, and converted to dB. The per-item top_db floor is applied by the caller afterwards.
#pragma once
#include <limits>
#include "blas.h"
#include "log_mel_plan.h"

namespace aver_fast_cpu {
namespace AVER_ISA {

inline int64_t mel_scratch(int64_t n_fft) { return (3 * (n_fft / 2) + 2) * kMelLanes; }

template <typename T>
inline T mel_sample(const T* wav, int64_t n, int64_t idx, int mode) {
  if (idx >= 0 && idx < n) return wav[idx];
  switch (mode) {
    case kReflect: idx = idx < 0 ? -idx : 2 * (n - 1) - idx; break;
    case kReplicate: idx = idx < 0 ? 0 : n - 1; break;
    case kCircular: idx = ((idx % n) + n) % n; break;
    default: return T(0);
  }
  return wav[idx];
}

// Writes frames [t0, t0 + nt) (nt <= kMelLanes) of out (n_mels x frames) in dB.
template <typename T>
void log_mel_block(const MelPlan<T>& p, const T* wav, int64_t t0, int64_t nt, T* out, T* scratch) {
  constexpr int64_t V = kMelLanes;
  const int64_t H = p.n_fft / 2;
  T* re = scratch;
  T* im = re + H * V;
  T* pw = im + H * V;  // (H + 1) x V
  T* dbuf = pw + (H + 1) * V;
  fill(re, 2 * H * V, T(0));
  // Frame samples go to z[m] = x[2m] + i x[2m + 1] in bit-reversed order; sample index outer, lanes inner, so
  // each store fills one contiguous row of V lanes and each lane reads its frame sequentially.
  const int64_t first = t0 * p.hop - p.pad;
  const bool inside = nt == V && first + p.win_begin >= 0 && first + (V - 1) * p.hop + p.win_end <= p.n_samples;
  for (int64_t n = p.win_begin; n < p.win_end; ++n) {
    T* dst = (n & 1 ? im : re) + int64_t(p.bitrev[n >> 1]) * V;
    const T wn = p.window[n];
    if (inside) {
      const T* src = wav + first + n;
#pragma omp simd
      for (int64_t l = 0; l < V; ++l) dst[l] = wn * src[l * p.hop];
    } else {
      for (int64_t l = 0; l < nt; ++l) dst[l] = wn * mel_sample(wav, p.n_samples, first + l * p.hop + n, p.pad_mode);
    }
  }
  for (int64_t len = 2; len <= H; len <<= 1) {  // iterative radix-2 DIT over all lanes at once
    const int64_t half = len >> 1, step = H / len;
    for (int64_t base = 0; base < H; base += len)
      for (int64_t k = 0; k < half; ++k) {
        const T wr = p.tw_r[k * step], wi = p.tw_i[k * step];
        T* ar = re + (base + k) * V; T* ai = im + (base + k) * V;
        T* br = ar + half * V;       T* bi = ai + half * V;
#pragma omp simd
        for (int64_t l = 0; l < V; ++l) {
          const T tr = br[l] * wr - bi[l] * wi, ti = br[l] * wi + bi[l] * wr;
          br[l] = ar[l] - tr; bi[l] = ai[l] - ti;
          ar[l] += tr;        ai[l] += ti;
        }
      }
  }
  for (int64_t k = 0; k <= H; ++k) {  // X[k] = E + w^k O, E = (Z[k] + conj Z[H-k]) / 2, O = (Z[k] - conj Z[H-k]) / 2i
    const T* zr = re + (k % H) * V; const T* zi = im + (k % H) * V;
    const T* cr = re + ((H - k) % H) * V; const T* ci = im + ((H - k) % H) * V;
    const T wr = p.post_r[k], wi = p.post_i[k];
    T* out_k = pw + k * V;
#pragma omp simd
    for (int64_t l = 0; l < V; ++l) {
      const T er = T(0.5) * (zr[l] + cr[l]), ei = T(0.5) * (zi[l] - ci[l]);
      const T orr = T(0.5) * (zi[l] + ci[l]), oi = T(-0.5) * (zr[l] - cr[l]);
      const T xr = er + wr * orr - wi * oi, xi = ei + wr * oi + wi * orr;
      out_k[l] = xr * xr + xi * xi;
    }
  }
  using S = Simd<T>;
  static_assert(V % S::lanes == 0, "lanes must be a multiple of the vector width");
  for (int64_t m = 0; m < p.n_mels; ++m) {
    const T* w = p.mel_w + p.mel_off[m];
    const T* src = pw + int64_t(p.mel_lo[m]) * V;
    for (int64_t v0 = 0; v0 < V; v0 += S::lanes) {
      typename S::vec acc = S::splat(T(0));
      for (int64_t f = 0; f < p.mel_len[m]; ++f) acc += w[f] * S::load(src + f * V + v0);
      // vdb reads the float's bits, so NaN and +Inf powers (a NaN or Inf sample) bypass it: NaN stays NaN and
      // +Inf gives +Inf dB, as in the reference
      const auto finite = (acc == acc) & (acc < S::splat(std::numeric_limits<T>::infinity()));
      acc = acc < S::splat(T(1e-10)) ? S::splat(T(1e-10)) : acc;
      S::store(dbuf + v0, finite ? vdb(acc) : acc);
    }
    T* dst = out + m * p.frames + t0;
    for (int64_t l = 0; l < nt; ++l) dst[l] = dbuf[l];
  }
}

}  // namespace AVER_ISA
}  // namespace aver_fast_cpu
