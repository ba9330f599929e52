"""The compiled extension ``aver_fast._C``: loaded if it was built for the torch in use, with one clear warning
(naming the fix) if it was not."""
from __future__ import annotations

import glob
import json
import os
import warnings

import torch

from ._validation import FLOAT_DTYPES, HALF_DTYPES

PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD_INFO = os.path.join(PACKAGE_DIR, "_C_build.json")  # written by setup.py beside the extension
BUILD_HINT = ("rebuild it against the installed torch: `pip install --no-build-isolation -e .` in a checkout, or "
              "`pip install --no-build-isolation --no-deps --force-reinstall aver-fast` (needs a C++17 compiler)")


def build_info() -> dict | None:
    """What the extension was built against (``{"torch": ..., "cuda": ..., "with_cuda": ...}``), None if unknown."""
    try:
        with open(BUILD_INFO) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _source_tree_shadowing() -> str | None:
    """When ``aver_fast`` was imported from a source checkout that was never built (the current directory shadows
    an installed copy), say so: Python's own error would speak of a circular import."""
    checkout = os.path.dirname(PACKAGE_DIR)
    if not (os.path.isfile(os.path.join(checkout, "setup.py")) and os.path.isdir(os.path.join(checkout, "csrc"))):
        return None
    if glob.glob(os.path.join(PACKAGE_DIR, "_C.*")):  # built: it failed to load for another reason
        return None
    return (f"aver_fast was imported from the source checkout {checkout} (the current directory or PYTHONPATH "
            "comes before the installed package) and the checkout has no built extension aver_fast._C; run from "
            "another directory, or build the checkout in place with `pip install --no-build-isolation -e .`")


def _load() -> str | None:
    """Import ``aver_fast._C`` (registering the aver_fast:: ops); None on success, else why it was not loaded."""
    info = build_info()
    installed = torch.__version__.split("+")[0]
    if info is not None and str(info.get("torch", "")).split("+")[0] != installed:
        return f"aver_fast._C was built against torch {info.get('torch')} but torch {torch.__version__} is in use; " \
               + BUILD_HINT
    try:
        from .. import _C  # noqa: F401
    except ImportError as e:  # not built, or built against another torch
        return _source_tree_shadowing() or \
            f"the compiled extension aver_fast._C could not be loaded ({e}); {BUILD_HINT}"
    return None


REASON = _load()
LOADED = REASON is None
if not LOADED:
    warnings.warn(f"aver_fast: {REASON}. Falling back to the pure-PyTorch reference ops.", RuntimeWarning,
                  stacklevel=2)


def cpp_available() -> str | None:
    """None when the compiled CPU kernels can run, else why not."""
    return REASON


def cpu_kernels(device: torch.device, dtype: torch.dtype) -> str | None:
    """The C++ CPU kernels take CPU tensors: float32/float64 as they are, float16/bfloat16 computed in float32 (cast
    in and out by the op's launcher, as the references compute them)."""
    if device.type != "cpu":
        return f"the C++ kernels run on CPU tensors only (got {device.type})"
    if dtype not in FLOAT_DTYPES:
        return f"the C++ kernels take floating-point tensors (got {dtype})"
    return None


_ISA: list[str] = []  # the instruction set in use, once asked (set_cpu_isa keeps it current)


def cpu_native_bf16() -> bool:
    """Whether the C++ kernels in use multiply bfloat16 natively (AVX512-BF16 in the AVX-512 build; off with
    ``AVER_FAST_CPU_LOW_PRECISION=0``)."""
    return LOADED and torch.ops.aver_fast.cpu_native_bf16()


def cpu_half_inside(device: torch.device, dtype: torch.dtype) -> str | None:
    """How the TLAB C++ kernel, which converts float16/bfloat16 itself, computes them."""
    if dtype not in HALF_DTYPES:
        return None
    name = str(dtype).removeprefix("torch.")
    if dtype == torch.bfloat16 and cpu_native_bf16():
        return (f"{name}: Q Kᵀ multiplied natively (AVX512-BF16, float32 accumulation) when D >= 128, everything "
                "else in float32 inside the C++ kernel")
    return f"{name} computed in float32 inside the C++ kernel (converted per problem; no native products here)"


def cpu_half_outside(device: torch.device, dtype: torch.dtype) -> str | None:
    """How a C++ op whose launcher casts float16/bfloat16 computes them."""
    if dtype in HALF_DTYPES:
        return f"{str(dtype).removeprefix('torch.')} cast to float32 for the C++ kernel and the result cast back"
    return None


def cpu_isa() -> str | None:
    """Instruction set the C++ kernels use on this CPU (``default``, ``avx2`` or ``avx512``), None if not built."""
    if not LOADED:
        return None
    if not _ISA:
        _ISA.append(torch.ops.aver_fast.cpu_isa())
    return _ISA[0]


def set_cpu_isa(name: str = "") -> str:
    """Force the C++ kernels' instruction set (``""`` = best this CPU supports); returns the one now in use."""
    if not LOADED:
        raise RuntimeError(REASON)
    _ISA[:] = [torch.ops.aver_fast.set_cpu_isa(name)]
    return _ISA[0]


def triton_available() -> str | None:
    """None when Triton can be imported, else why not."""
    try:
        import triton  # noqa: F401
    except ImportError as e:
        return f"triton is not installed ({e})"
    return None


TRITON_DTYPES = (*HALF_DTYPES, torch.float32)


def triton_device(device: torch.device, dtype: torch.dtype) -> str | None:
    """Triton kernels run on CUDA tensors, or on CPU tensors under ``TRITON_INTERPRET=1`` (set before import)."""
    import os

    if dtype not in TRITON_DTYPES:
        return f"the Triton kernels take float16/bfloat16/float32 (got {dtype})"
    if device.type == "cuda":
        return None if torch.cuda.is_available() else "no CUDA device is visible"
    if device.type == "cpu" and os.environ.get("TRITON_INTERPRET") == "1":
        return None
    return (f"the Triton kernels run on CUDA tensors (got {device.type}; on CPU they run in the interpreter "
            "with TRITON_INTERPRET=1 set before importing aver_fast)")
