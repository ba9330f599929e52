"""Launch plans: for every kernel launch, the specialization (compile-time constants, warps, pipeline stages) chosen
for the GPU target, and the grid. The launchers and the ahead-of-time compile gate (``aver-fast check-gpu-build``)
take their plans from the same functions, so the gate compiles exactly what the dispatcher can launch.

The target is, in order: ``AVER_FAST_TRITON_TARGET`` (a compute capability such as ``86``), the CUDA device the
tensors live on, else the smallest supported target (sm_86's 99 KB of shared memory per block).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch

TARGET_ENV = "AVER_FAST_TRITON_TARGET"
# opt-in shared memory per block (bytes) of the supported compute capabilities
SHARED_MEMORY = {80: 166912, 86: 101376, 87: 166912, 89: 101376, 90: 232448}
DEFAULT_TARGET = 86  # the smallest shared memory of the supported targets: a plan for it fits every other one


@dataclass(frozen=True)
class Target:
    """A GPU compile target: compute capability (``86`` = sm_86) and its shared memory per block in bytes."""

    cc: int
    shared_memory: int


def target_for(cc: int) -> Target:
    if cc not in SHARED_MEMORY:
        raise ValueError(f"unsupported Triton target sm_{cc}: supported {sorted(SHARED_MEMORY)}")
    return Target(cc, SHARED_MEMORY[cc])


def current_target(device: torch.device | None = None) -> Target:
    """The target plans are made for (see the module docstring). A CUDA device not in :data:`SHARED_MEMORY` is
    planned with its own shared memory per block (the only property the plans read)."""
    env = os.environ.get(TARGET_ENV)
    if env:
        try:
            return target_for(int(env.removeprefix("sm_")))
        except ValueError as e:
            raise ValueError(f"{TARGET_ENV}={env!r}: {e}") from None
    if device is not None and device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return Target(props.major * 10 + props.minor, props.shared_memory_per_block_optin)
    return target_for(DEFAULT_TARGET)


@dataclass(frozen=True)
class Plan:
    """One launch: ``kernel[grid](*args, **constexprs, num_warps=..., num_stages=...)``. ``pointers`` gives the
    element dtype of each pointer argument (the gate compiles with it); other arguments are int32 scalars except
    ``floats``."""

    kernel: object  # a triton.JITFunction
    grid: tuple[int, ...]
    constexprs: dict = field(default_factory=dict)
    pointers: dict = field(default_factory=dict)
    floats: tuple[str, ...] = ("scale",)
    num_warps: int = 4
    num_stages: int = 1  # Triton's default (3) made the loops' shared memory overflow 99 KB targets

    @classmethod
    def of(cls, kernel, grid: tuple[int, ...], constexprs: dict, dtypes: dict, **options) -> "Plan":
        """A plan whose ``pointers`` are the entries of ``dtypes`` (pointer name -> element dtype, shared by a family
        of kernels) that name arguments of ``kernel``."""
        names = set(kernel.arg_names)
        return cls(kernel, grid, constexprs, {k: v for k, v in dtypes.items() if k in names}, **options)

    def launch(self, *args) -> None:
        self.kernel[self.grid](*args, **self.constexprs, num_warps=self.num_warps, num_stages=self.num_stages)

    def key(self) -> tuple:
        """What makes a distinct compiled specialization (the grid does not)."""
        return (self.kernel.__name__, tuple(sorted(self.constexprs.items())),
                tuple(sorted((k, str(v)) for k, v in self.pointers.items())), self.num_warps, self.num_stages)

    def signature(self) -> dict[str, str]:
        """Triton's signature of the kernel for ahead-of-time compilation."""
        types = {torch.float32: "*fp32", torch.float16: "*fp16", torch.bfloat16: "*bf16"}
        out = {}
        for name in self.kernel.arg_names:
            if name in self.constexprs:
                out[name] = "constexpr"
            elif name in self.pointers:
                out[name] = types[self.pointers[name]]
            else:
                out[name] = "fp32" if name in self.floats else "i32"
        return out
