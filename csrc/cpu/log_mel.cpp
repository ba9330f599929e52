// CPU implementation of aver_fast::log_mel: blocks of kMelLanes frames per task, read straight from the waveform
// (no framed copy), radix-2 real FFT, power, sparse mel projection (only each filter's non-zero band) and dB in one
// pass; then the per-item top_db floor. Needs n_fft to be a power of two (the Python registry falls back to the
// reference otherwise).
#include <cmath>
#include <limits>
#include <vector>

#include "common.h"

namespace aver_fast_cpu {
namespace {

template <typename T>
struct PlanStorage {
  std::vector<T> window, tw_r, tw_i, post_r, post_i, mel_w;
  std::vector<int32_t> bitrev, mel_lo, mel_len;
  std::vector<int64_t> mel_off;
};

template <typename T>
MelPlan<T> make_plan(PlanStorage<T>& st, const at::Tensor& window, const at::Tensor& fb, int64_t n_samples,
                     int64_t hop, bool center, int64_t pad_mode, int64_t frames) {
  const int64_t n_fft = window.size(0), H = n_fft / 2, n_freqs = fb.size(0), n_mels = fb.size(1);
  const auto win = window.contiguous();
  const auto fbc = fb.contiguous();
  const T* wp = win.data_ptr<T>();
  const T* fp = fbc.data_ptr<T>();
  st.window.assign(wp, wp + n_fft);
  int64_t wb = 0, we = n_fft;
  while (wb < n_fft && st.window[wb] == T(0)) ++wb;
  while (we > wb && st.window[we - 1] == T(0)) --we;
  const double pi = 3.14159265358979323846;
  for (int64_t k = 0; k < H / 2 + (H == 1); ++k) {
    st.tw_r.push_back(static_cast<T>(std::cos(2 * pi * k / H)));
    st.tw_i.push_back(static_cast<T>(-std::sin(2 * pi * k / H)));
  }
  for (int64_t k = 0; k <= H; ++k) {
    st.post_r.push_back(static_cast<T>(std::cos(2 * pi * k / n_fft)));
    st.post_i.push_back(static_cast<T>(-std::sin(2 * pi * k / n_fft)));
  }
  int bits = 0;
  while ((int64_t(1) << bits) < H) ++bits;
  for (int64_t i = 0; i < H; ++i) {
    int64_t r = 0;
    for (int b = 0; b < bits; ++b) r |= ((i >> b) & 1) << (bits - 1 - b);
    st.bitrev.push_back(static_cast<int32_t>(r));
  }
  for (int64_t m = 0; m < n_mels; ++m) {  // each filter's non-zero band [lo, hi)
    int64_t lo = 0, hi = n_freqs;
    while (lo < n_freqs && fp[lo * n_mels + m] == T(0)) ++lo;
    while (hi > lo && fp[(hi - 1) * n_mels + m] == T(0)) --hi;
    st.mel_lo.push_back(static_cast<int32_t>(lo));
    st.mel_len.push_back(static_cast<int32_t>(hi - lo));
    st.mel_off.push_back(static_cast<int64_t>(st.mel_w.size()));
    for (int64_t f = lo; f < hi; ++f) st.mel_w.push_back(fp[f * n_mels + m]);
  }
  MelPlan<T> p;
  p.n_fft = n_fft;
  p.hop = hop;
  p.n_samples = n_samples;
  p.pad = center ? n_fft / 2 : 0;
  p.frames = frames;
  p.n_mels = n_mels;
  p.win_begin = wb;
  p.win_end = we;
  p.pad_mode = static_cast<int>(pad_mode);
  p.window = st.window.data();
  p.tw_r = st.tw_r.data();
  p.tw_i = st.tw_i.data();
  p.post_r = st.post_r.data();
  p.post_i = st.post_i.data();
  p.bitrev = st.bitrev.data();
  p.mel_lo = st.mel_lo.data();
  p.mel_len = st.mel_len.data();
  p.mel_off = st.mel_off.data();
  p.mel_w = st.mel_w.data();
  return p;
}

at::Tensor log_mel(const at::Tensor& waveform, const at::Tensor& window, const at::Tensor& filterbank,
                   int64_t hop_length, bool center, int64_t pad_mode, std::optional<double> top_db, int64_t frames) {
  check_cpu_float(waveform, "waveform", 2);
  check_cpu_float(window, "window", 1);
  check_cpu_float(filterbank, "filterbank", 2);
  check_same_dtype(waveform, window, "waveform", "window");
  check_same_dtype(waveform, filterbank, "waveform", "filterbank");
  const int64_t n_fft = window.size(0), n = waveform.size(1);
  TORCH_CHECK(n_fft >= 2 && (n_fft & (n_fft - 1)) == 0, "aver_fast: the CPU log_mel kernel needs n_fft to be a "
              "power of two, got ", n_fft);
  TORCH_CHECK(filterbank.size(0) == n_fft / 2 + 1, "aver_fast: filterbank must be (n_fft/2 + 1, n_mels), got ",
              filterbank.sizes());
  TORCH_CHECK(hop_length > 0, "aver_fast: hop_length must be positive");
  TORCH_CHECK(pad_mode >= 0 && pad_mode <= 3, "aver_fast: bad pad_mode ", pad_mode);
  TORCH_CHECK(center ? (pad_mode != kReflect || n > n_fft / 2) && n > 0 : n >= n_fft,
              "aver_fast: waveform of ", n, " samples is too short for n_fft=", n_fft);
  // frames comes from the op layer (aver_fast.ops.log_mel.num_frames, the one home of the rule); here only the
  // bound that keeps every read inside the (padded) waveform is checked
  TORCH_CHECK(frames >= 1 && (frames - 1) * hop_length + (center ? 0 : n_fft) <= n, "aver_fast: ", frames,
              " frames of hop ", hop_length, " do not fit a waveform of ", n, " samples (n_fft=", n_fft, ")");
  const auto wav = waveform.contiguous();
  const int64_t B = wav.size(0);
  const int64_t n_mels = filterbank.size(1);
  auto out = at::empty({B, n_mels, frames}, wav.options());
  AT_DISPATCH_FLOATING_TYPES(wav.scalar_type(), "aver_fast_log_mel", [&] {
    PlanStorage<scalar_t> storage;
    const MelPlan<scalar_t> plan = make_plan<scalar_t>(storage, window, filterbank, n, hop_length, center, pad_mode, frames);
    const auto& kt = cpu_kernels().get<scalar_t>();
    const int64_t blocks = (frames + kMelLanes - 1) / kMelLanes;
    const scalar_t* wp = wav.data_ptr<scalar_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    for_each_problem<scalar_t>(B * blocks, kt.mel_scratch(n_fft), [&](int64_t task, scalar_t* scratch) {
      const int64_t b = task / blocks, t0 = (task % blocks) * kMelLanes;
      const int64_t nt = frames - t0 < kMelLanes ? frames - t0 : kMelLanes;
      kt.mel_block(plan, wp + b * n, t0, nt, op + b * n_mels * frames, scratch);
    });
    if (top_db.has_value()) {
      const scalar_t floor_db = static_cast<scalar_t>(*top_db);
      for_each_problem<scalar_t>(B, 0, [&](int64_t b, scalar_t*) {
        scalar_t* o = op + b * n_mels * frames;
        scalar_t mx = o[0];
        bool nan = false;  // as torch.amax/maximum: a NaN anywhere in the item makes its floor, so all of it, NaN
        for (int64_t e = 0; e < n_mels * frames; ++e) {
          mx = o[e] > mx ? o[e] : mx;
          nan |= o[e] != o[e];
        }
        const scalar_t lo = nan ? std::numeric_limits<scalar_t>::quiet_NaN() : mx - floor_db;
        for (int64_t e = 0; e < n_mels * frames; ++e) o[e] = (nan || o[e] < lo) ? lo : o[e];
      });
    }
  });
  return out;
}

}  // namespace
}  // namespace aver_fast_cpu

TORCH_LIBRARY_IMPL(aver_fast, CPU, m) { m.impl("log_mel", &aver_fast_cpu::log_mel); }
