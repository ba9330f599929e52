"""What this CPU computes natively, for the choices that depend on it: whether bfloat16 (or float16) autocast is
worth running, and which layers must stay in float32 because oneDNN has no low-precision kernel for them here.

``AVER_FAST_CPU_LOW_PRECISION=0`` (or ``=1``) makes the answer "no" (or "yes") for every dtype: the forced
no-native-bfloat16 path, testable on any machine. ``ONEDNN_MAX_CPU_ISA`` capped below an ISA with the dtype also
makes it "no", as oneDNN then has no such kernels.
"""
from __future__ import annotations

import functools
import os
import sys

import torch

ENV_VAR = "AVER_FAST_CPU_LOW_PRECISION"
# /proc/cpuinfo flags that give a dtype native arithmetic (dot products with float32 accumulation)
NATIVE_FLAGS = {torch.bfloat16: ("avx512_bf16", "amx_bf16"), torch.float16: ("avx512_fp16", "amx_fp16")}
# oneDNN ISA caps (ONEDNN_MAX_CPU_ISA) that keep each dtype's kernels
ONEDNN_ISAS = {torch.bfloat16: ("BF16", "FP16", "AMX", "AVX10"), torch.float16: ("FP16", "AVX10")}


@functools.cache
def _cpuinfo() -> str:
    """/proc/cpuinfo (Linux; elsewhere nothing is known)."""
    if not sys.platform.startswith("linux"):
        return ""
    try:
        with open("/proc/cpuinfo") as f:
            return f.read()
    except OSError:
        return ""


@functools.cache
def flags() -> frozenset[str]:
    """The CPU's feature flags as /proc/cpuinfo names them (``avx2``, ``avx512_bf16``, ...); empty where unknown."""
    return frozenset(_cpuinfo().split())


@functools.cache
def model_name() -> str:
    """The CPU's model as the OS names it (/proc/cpuinfo) with its family and model numbers, which tell apart what a
    virtual machine's generic name hides (``AMD EPYC (family 25, model 17)``: Zen 4; family 26: Zen 5); else what
    Python's platform module knows."""
    fields: dict[str, str] = {}
    for line in _cpuinfo().splitlines():
        if not line.strip():
            break  # the first processor's block is enough
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    if "model name" in fields:
        ids = (f" (family {fields['cpu family']}, model {fields['model']})"
               if fields.get("cpu family", "").isdigit() and fields.get("model", "").isdigit() else "")
        return fields["model name"] + ids
    import platform
    return platform.processor() or platform.machine()


def has_native(dtype: torch.dtype = torch.bfloat16) -> bool:
    """Whether this CPU multiplies ``dtype`` (bfloat16 or float16) in hardware, and oneDNN may use it."""
    forced = os.environ.get(ENV_VAR)
    if forced in ("0", "1"):
        return forced == "1"
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper()
    if cap and cap != "ALL" and not any(k in cap for k in ONEDNN_ISAS.get(dtype, ())):
        return False
    return any(flag in flags() for flag in NATIVE_FLAGS.get(dtype, ()))


def autocast_without_native(device: torch.device) -> bool:
    """True under CPU autocast to a dtype this CPU has no native arithmetic for (there oneDNN refuses some layers,
    the LSTM among them, and the low precision is no faster: such layers run in float32)."""
    return (device.type == "cpu" and torch.is_autocast_enabled("cpu")
            and not has_native(torch.get_autocast_dtype("cpu")))


INDUCTOR_CACHE_ENV = "TORCHINDUCTOR_CACHE_DIR"


def separate_compile_cache() -> str | None:
    """Give torch.compile's on-disk cache a folder of its own while ``ATEN_CPU_CAPABILITY`` caps PyTorch (how an
    AVX2-only CPU is emulated here). Inductor's cache is not keyed by that variable: with torch 2.14.1, code cached by
    a process with another capability computed garbage or corrupted the heap (``a * 2`` came back NaN). Returns the
    folder (``<inductor's default>/aten-<capability>``), or None where nothing is changed: no cap, or
    ``TORCHINDUCTOR_CACHE_DIR`` set to another folder than the default (which inductor itself writes there once
    asked, e.g. on importing torch._dynamo)."""
    cap = os.environ.get("ATEN_CPU_CAPABILITY", "").strip().lower()
    if not cap:
        return None
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    default = os.path.abspath(default_cache_dir())
    if os.path.abspath(os.environ.get(INDUCTOR_CACHE_ENV, default)) != default:
        return None
    path = os.path.join(default, f"aten-{cap}")
    os.environ[INDUCTOR_CACHE_ENV] = path
    return path
