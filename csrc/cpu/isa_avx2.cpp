// avx2 build of the CPU kernels (chosen at run time when the CPU supports it; see isa_default.cpp).
#include <cmath>
#include <cstdint>

#include "isa.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>  // before the target pragma (blas.h uses it): included under it, its intrinsics mismatch
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define AVER_ISA avx2
#define AVER_VEC_BYTES 32
#include "isa_impl.h"
#pragma GCC pop_options

namespace aver_fast_cpu {
const Kernels* kernels_avx2() {
  static const Kernels k{"avx2", avx2::make_table<float>(), avx2::make_table<double>(), nullptr};
  return &k;
}
}  // namespace aver_fast_cpu
#else
namespace aver_fast_cpu {
const Kernels* kernels_avx2() { return nullptr; }
}  // namespace aver_fast_cpu
#endif
