// The aver_fast operator library: schemas of every op (CPU kernels in csrc/cpu/, CUDA kernels in csrc/cuda/
// register implementations for these schemas under their dispatch keys).
#include <Python.h>
#include <torch/library.h>

#include "cpu/isa.h"

TORCH_LIBRARY(aver_fast, m) {
  m.def("tlab_attention(Tensor q, Tensor k, Tensor v, float scale) -> Tensor");
  // For a backward: (O, A_G, A_L^T, mid) with mid = A_G A_L (L < D) or A_L V; the backward recomputes nothing.
  m.def("tlab_attention_train(Tensor q, Tensor k, Tensor v, float scale) -> (Tensor, Tensor, Tensor, Tensor)");
  m.def("tlab_attention_backward(Tensor grad, Tensor q, Tensor k, Tensor v, Tensor a_g, Tensor p, Tensor mid, "
        "float scale) -> (Tensor, Tensor, Tensor)");
  // Returns (C, XW): XW = x @ w is computed once and kept for the backward instead of being recomputed.
  m.def("jca_correlation(Tensor x, Tensor w, Tensor j, float scale) -> (Tensor, Tensor)");
  m.def("jca_correlation_backward(Tensor grad, Tensor out, Tensor xw, Tensor x, Tensor w, Tensor j, float scale) "
        "-> (Tensor, Tensor, Tensor)");
  m.def("log_mel(Tensor waveform, Tensor window, Tensor filterbank, int hop_length, bool center, int pad_mode, "
        "float? top_db, int frames) -> Tensor");
  m.def("set_cpu_isa(str name) -> str", [](std::string name) { return aver_fast_cpu::set_cpu_isa(name); });
  m.def("cpu_isa() -> str", []() { return std::string(aver_fast_cpu::cpu_kernels().name); });
  m.def("cpu_native_bf16() -> bool", []() { return aver_fast_cpu::native_bf16_dot() != nullptr; });
}

// `import aver_fast._C` loads this library (and with it the registrations above); it has no Python functions.
static struct PyModuleDef aver_fast_module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
PyMODINIT_FUNC PyInit__C(void) { return PyModule_Create(&aver_fast_module); }
