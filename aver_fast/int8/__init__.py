"""int8 backbones: ``aver-fast quantize`` writes a checkpoint whose backbones run in an int8 engine
(:mod:`aver_fast.int8.openvino`); :func:`attach` loads them in place of the fp32 ones."""
from .openvino import MissingExtra
from .quantize import MIN_CCC, attach, check_info, quantize_checkpoint

__all__ = ["MIN_CCC", "MissingExtra", "attach", "check_info", "quantize_checkpoint"]
