// Baseline build of the CPU kernels (whatever the compiler targets by default), plus the runtime ISA choice.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <stdexcept>
#include <string>

#include "isa.h"

#define AVER_ISA baseline
#define AVER_VEC_BYTES 16
#include "isa_impl.h"

namespace aver_fast_cpu {

const Kernels* kernels_default() {
  static const Kernels k{"default", baseline::make_table<float>(), baseline::make_table<double>(), nullptr};
  return &k;
}

namespace {

bool cpu_has(const std::string& name) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  if (name == "avx2") return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (name == "avx512")
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("fma");
#endif
  return name == "default";
}

const Kernels* lookup(const std::string& name) {
  if (name == "default") return kernels_default();
  if (name == "avx2") return cpu_has("avx2") ? kernels_avx2() : nullptr;
  if (name == "avx512") return cpu_has("avx512") ? kernels_avx512() : nullptr;
  return nullptr;
}

const Kernels* best() {
  for (const char* name : {"avx512", "avx2"})
    if (const Kernels* k = lookup(name)) return k;
  return kernels_default();
}

std::mutex mu;
const Kernels* current = nullptr;

}  // namespace

std::string set_cpu_isa(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu);
  if (name.empty()) {
    current = best();
  } else {
    const Kernels* k = lookup(name);
    if (k == nullptr)
      throw std::invalid_argument("aver_fast: CPU ISA '" + name +
                                  "' is not available on this CPU/build (choose default, avx2 or avx512)");
    current = k;
  }
  return current->name;
}

GemmNtBf16 native_bf16_dot() {
  const char* env = std::getenv("AVER_FAST_CPU_LOW_PRECISION");
  if (env != nullptr && std::string(env) == "0") return nullptr;
  return cpu_kernels().gemm_nt_bf16;
}

const Kernels& cpu_kernels() {
  {
    std::lock_guard<std::mutex> lock(mu);
    if (current != nullptr) return *current;
  }
  const char* env = std::getenv("AVER_FAST_CPU_ISA");
  set_cpu_isa(env ? env : "");
  return *current;
}

}  // namespace aver_fast_cpu
