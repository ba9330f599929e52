"""int8 backbones: the engine (:mod:`aver_fast.int8.openvino`) and a checkpoint's int8 entry
(:mod:`aver_fast.int8.checkpoint`). ``aver-fast quantize`` (:mod:`aver_fast.quantization`) writes them."""
from .checkpoint import attach, check_info, engine_backbone, model_files
from .openvino import MissingExtra

__all__ = ["MissingExtra", "attach", "check_info", "engine_backbone", "model_files"]
