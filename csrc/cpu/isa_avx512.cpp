// avx512 build of the CPU kernels (chosen at run time when the CPU supports it; see isa_default.cpp).
#include <cmath>
#include <cstdint>

#include "isa.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")
#define AVER_ISA avx512
#define AVER_VEC_BYTES 64
#include "isa_impl.h"
#pragma GCC pop_options

namespace aver_fast_cpu {
const Kernels* kernels_avx512() {
  static const Kernels k{"avx512", avx512::make_table<float>(), avx512::make_table<double>()};
  return &k;
}
}  // namespace aver_fast_cpu
#else
namespace aver_fast_cpu {
const Kernels* kernels_avx512() { return nullptr; }
}  // namespace aver_fast_cpu
#endif
