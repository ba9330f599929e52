"""Export a model for deployment: ONNX (onnxruntime, TensorRT) or a ``torch.export`` ExportedProgram (``.pt2``).

The fused ops are exported as their PyTorch reference (the graph holds only PyTorch's own operators), so the file
runs where aver_fast is not installed. The batch size is dynamic; every other size is the model's.
"""
from __future__ import annotations

import copy
import os
import warnings
from dataclasses import dataclass

import torch
from torch import nn

from .models import AVModel, OnFeatures
from .ops._registry import using_backend

FORMATS = ("onnx", "exported-program")
SUFFIX = {"onnx": ".onnx", "exported-program": ".pt2"}  # torch.export.load reads only .pt2 files
OUTPUT = "va"  # (B, L, 2) [valence, arousal] per step
EXAMPLE_BATCH = 2  # the batch traced; any batch runs


class _KeepNaN(nn.Module):
    """``module``'s output, NaN for every item whose inputs hold a NaN or an infinity, as in PyTorch: runtimes
    implement ReLU and max-pooling with instructions that drop NaN (onnxruntime returns finite scores for an
    all-NaN video), so the exported graph states the rule itself. Inputs and output are batch-first."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        out = self.module(first, second)
        bad = ~(torch.isfinite(first).flatten(1).all(dim=1) & torch.isfinite(second).flatten(1).all(dim=1))
        return torch.where(bad.view(-1, *([1] * (out.dim() - 1))), torch.full_like(out, float("nan")), out)


@dataclass
class Exported:
    """What :func:`export_model` wrote: the file, its format and its inputs (name -> shape, ``B`` = any batch)."""

    path: str
    format: str
    inputs: dict[str, tuple]

    def describe(self) -> dict:
        return {"path": self.path, "format": self.format, "output": OUTPUT,
                "inputs": {k: "x".join(str(d) for d in v) for k, v in self.inputs.items()}}


def example_inputs(model: AVModel, features: bool = False, batch: int = EXAMPLE_BATCH) -> dict[str, torch.Tensor]:
    """Random inputs of the model's sizes: ``video (B, L, 3, T, S, S)``, ``audio (B, L, 1, n_mels, frames)``, or with
    ``features`` ``v_feat (B, L, R, C_v)``, ``a_feat (B, L, C_a)``."""
    c = model.config
    g = torch.Generator().manual_seed(0)
    if features:
        shapes = {"v_feat": (batch, c.seq_len, c.num_regions, c.video_dim), "a_feat": (batch, c.seq_len, c.audio_dim)}
    else:
        shapes = {"video": (batch, c.seq_len, 3, c.frames_per_clip, c.image_size, c.image_size),
                  "audio": (batch, c.seq_len, 1, c.n_mels, c.audio_frames)}
    return {k: torch.randn(s, generator=g) for k, s in shapes.items()}


def export_model(model: AVModel, path: str, format: str = "onnx", features: bool = False) -> Exported:
    """Write ``model`` (the full model, inputs ``video``/``audio``; or with ``features`` the fusion part, inputs
    ``v_feat``/``a_feat``) to ``path`` in float32 on the CPU, eval mode, output ``va``. The file is written under a
    temporary name and moved into place, so a failed export leaves nothing half-written."""
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
    if not path.endswith(SUFFIX[format]):
        raise ValueError(f"{path}: the {format} format needs a file name ending in {SUFFIX[format]}")
    if format == "onnx":
        for package in ("onnx", "onnxscript"):
            try:
                __import__(package)
            except ImportError:
                raise ValueError(f"ONNX export needs the {package} package: pip install 'aver-fast[export]'") from None
    if os.path.isdir(path):
        raise ValueError(f"{path} is a folder: name the file to write")
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".tmp{os.getpid()}.{os.path.basename(path)}")
    try:  # the destination is checked before the export's work (a missing folder, a read-only one)
        open(tmp, "wb").close()
    except OSError as e:
        raise OSError(e.errno, f"cannot write {path} ({e.strerror})") from None
    try:  # from here on the probe (then the export) is removed unless it became the file
        model = copy.deepcopy(model).float().cpu().eval()  # the caller's model keeps its device, dtype and mode
        module = _KeepNaN(OnFeatures(model) if features else model).eval()
        inputs = example_inputs(model, features)
        batch = torch.export.Dim("batch", min=1, max=4096)
        dynamic = tuple({0: batch} for _ in inputs)
        with using_backend("reference"), torch.no_grad(), warnings.catch_warnings():
            # PyTorch's own notes while tracing (nn.LSTM's internal weight list, deprecations inside torch)
            warnings.filterwarnings("ignore", message=".*were assigned during export.*")
            warnings.filterwarnings("ignore", message=".*_check_is_size will be removed.*")
            warnings.filterwarnings("ignore", message=".*axis name: batch will not be used.*")
            if format == "onnx":
                # weights inside the file (one file to copy; the paper model is ~280 MB, under protobuf's 2 GB)
                torch.onnx.export(module, tuple(inputs.values()), tmp, input_names=list(inputs),
                                  output_names=[OUTPUT], dynamic_shapes=dynamic, dynamo=True, external_data=False,
                                  verbose=False)
            else:
                program = torch.export.export(module, tuple(inputs.values()), dynamic_shapes=dynamic)
                torch.export.save(program, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    shapes = {k: ("B", *v.shape[1:]) for k, v in inputs.items()}
    return Exported(path, format, shapes)


def run_exported(path: str, format: str, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """Run an exported file on ``inputs`` (name -> tensor) as a deployment would: onnxruntime on the CPU, or the
    loaded ExportedProgram's module. Exported files take a batch of at least one (onnxruntime aborts the whole
    process on an empty batch), so an empty one is refused here."""
    empty = [k for k, v in inputs.items() if v.shape[0] == 0]
    if empty:
        raise ValueError(f"input {empty[0]} has an empty batch: exported files need at least one item")
    if format == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        return torch.from_numpy(session.run([OUTPUT], {k: v.numpy() for k, v in inputs.items()})[0])
    return torch.export.load(path).module()(*inputs.values())
