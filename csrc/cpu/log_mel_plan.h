// Per-call constants of the CPU log-mel kernel (built once per call by log_mel.cpp, read by every thread).
#pragma once
#include <cstdint>

namespace aver_fast_cpu {

constexpr int64_t kMelLanes = 16;  // frames transformed together, one per SIMD lane
enum PadMode : int { kReflect = 0, kConstant = 1, kReplicate = 2, kCircular = 3 };

template <typename T>
struct MelPlan {
  int64_t n_fft, hop, n_samples, frames, n_mels, pad;  // pad = n_fft / 2 when centred, else 0
  int64_t win_begin, win_end;                          // non-zero range of the (zero-padded) window
  int pad_mode;
  const T* window;                     // n_fft entries
  const T* tw_r; const T* tw_i;        // H/2 twiddles of the H-point FFT, H = n_fft / 2: exp(-2 pi i k / H)
  const T* post_r; const T* post_i;    // H + 1 twiddles exp(-2 pi i k / n_fft) for the real split
  const int32_t* bitrev;               // H entries
  const int32_t* mel_lo; const int32_t* mel_len; const int64_t* mel_off; const T* mel_w;  // sparse filters
};

}  // namespace aver_fast_cpu
