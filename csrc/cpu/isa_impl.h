// Included by each isa_*.cpp after it has set AVER_ISA / AVER_VEC_BYTES and its target pragma.
#include "log_mel_kernel.h"
#include "tlab_attention_kernel.h"

namespace aver_fast_cpu {
namespace AVER_ISA {

template <typename T>
KernelTable<T> make_table() {
  return {&tlab_forward_scratch, &tlab_backward_scratch, &tlab_forward_problem<T>, &tlab_forward_from_scores<T>,
          &tlab_backward_problem<T>, &tlab_rows_scratch, &tlab_forward_rows<T>, &tlab_backward_rows<T>,
          &mel_scratch, &log_mel_block<T>};
}

}  // namespace AVER_ISA
}  // namespace aver_fast_cpu
