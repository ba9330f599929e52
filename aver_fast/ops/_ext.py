"""The compiled extension ``aver_fast._C``: loaded if it was built, with one clear warning if it was not."""
from __future__ import annotations

import warnings

import torch

BUILD_HINT = "build it with `pip install --no-build-isolation -e .` (needs a C++17 compiler and torch's headers)"

try:
    from .. import _C  # noqa: F401  (registers the aver_fast:: ops with torch.library)
    LOADED, REASON = True, None
except ImportError as e:  # not built, or built against another torch
    LOADED, REASON = False, f"the compiled extension aver_fast._C could not be loaded ({e}); {BUILD_HINT}"
    warnings.warn(f"aver_fast: {REASON}. Falling back to the pure-PyTorch reference ops.", RuntimeWarning,
                  stacklevel=2)


def cpp_available() -> str | None:
    """None when the compiled CPU kernels can run, else why not."""
    return REASON


def cpu_float32_64(device: torch.device, dtype: torch.dtype) -> str | None:
    """The C++ CPU kernels take CPU float32/float64 tensors."""
    if device.type != "cpu":
        return f"the C++ kernels run on CPU tensors only (got {device.type})"
    if dtype not in (torch.float32, torch.float64):
        return f"the C++ kernels take float32/float64 (got {dtype}; the reference computes it in float32)"
    return None


def cpu_isa() -> str | None:
    """Instruction set the C++ kernels use on this CPU (``default``, ``avx2`` or ``avx512``), None if not built."""
    return torch.ops.aver_fast.cpu_isa() if LOADED else None


def set_cpu_isa(name: str = "") -> str:
    """Force the C++ kernels' instruction set (``""`` = best this CPU supports); returns the one now in use."""
    if not LOADED:
        raise RuntimeError(REASON)
    return torch.ops.aver_fast.set_cpu_isa(name)


def triton_available() -> str | None:
    """None when Triton can be imported, else why not."""
    try:
        import triton  # noqa: F401
    except ImportError as e:
        return f"triton is not installed ({e})"
    return None


TRITON_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def triton_device(device: torch.device, dtype: torch.dtype) -> str | None:
    """Triton kernels run on CUDA tensors, or on CPU tensors under ``TRITON_INTERPRET=1`` (set before import)."""
    import os

    if dtype not in TRITON_DTYPES:
        return f"the Triton kernels take float16/bfloat16/float32 (got {dtype})"
    if device.type == "cuda":
        return None
    if device.type == "cpu" and os.environ.get("TRITON_INTERPRET") == "1":
        return None
    return (f"the Triton kernels run on CUDA tensors (got {device.type}; on CPU they run in the interpreter "
            "with TRITON_INTERPRET=1 set before importing aver_fast)")
