"""The int8 engine: OpenVINO runs the backbones, NNCF quantizes them (post-training, per-channel int8 weights and
int8 activations calibrated on real inputs). Chosen by measurement against PyTorch's and ONNX Runtime's int8
(``docs/int8.md``). Models travel as bytes (OpenVINO IR: an XML graph and its weights), so a checkpoint's
manifest checks them before OpenVINO reads them; nothing here runs code from a file."""
from __future__ import annotations

import contextlib
import importlib
import logging
import os
import tempfile
import warnings
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

ENGINE = "openvino"
EXTRA = "int8"  # pip install "aver-fast[int8]"


class MissingExtra(ValueError):
    """The int8 engine is not installed; the message names the extra."""


def _import(name: str):
    try:
        return importlib.import_module(name)
    except ImportError:
        raise MissingExtra(f"int8 needs OpenVINO and NNCF: pip install 'aver-fast[{EXTRA}]'") from None


def _openvino():
    return _import("openvino")


def _nncf():
    _openvino()
    return _import("nncf")


def require_quantizer() -> None:
    """Raise :class:`MissingExtra` unless both OpenVINO and NNCF import."""
    _nncf()


def version() -> str:
    return _openvino().__version__.split("-")[0]


class _Call(nn.Module):
    """``module.<method>`` as a module's ``forward``, the graph OpenVINO converts."""

    def __init__(self, module: nn.Module, method: str) -> None:
        super().__init__()
        self.module, self.method = module, method

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return getattr(self.module, self.method)(x)


def convert(module: nn.Module, method: str, example: torch.Tensor):
    """``module.<method>`` as an OpenVINO model with a dynamic batch (the other sizes of ``example``)."""
    ov = _openvino()
    shape = ov.PartialShape([-1, *example.shape[1:]])
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on the shape checks it folds
        logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)  # ("no CUDA runtime", on import)
        return ov.convert_model(_Call(module, method).eval(), example_input=example, input=[shape])


def quantize(model, batches: list[torch.Tensor]):
    """``model`` with int8 weights (per channel) and symmetric int8 activations (the fastest kernels), their ranges
    calibrated on ``batches`` (NNCF's post-training quantization, every batch), and each layer's bias corrected for
    the int8 error it measures there (the full correction: on the demo's trained model it halves the predictions'
    largest difference from fp32 against the fast one, docs/int8.md)."""
    nncf = _nncf()
    data = nncf.Dataset(batches, lambda t: t.contiguous().numpy())
    nncf.set_log_level(logging.ERROR)  # (its progress bars and notes)
    with contextlib.redirect_stdout(None):
        return nncf.quantize(model, data, subset_size=len(batches), preset=nncf.QuantizationPreset.PERFORMANCE,
                             fast_bias_correction=False)


def to_bytes(model) -> tuple[bytes, bytes]:
    """The IR of ``model``: ``(xml, weights)``."""
    ov = _openvino()
    with tempfile.TemporaryDirectory() as d:
        xml = os.path.join(d, "model.xml")
        ov.save_model(model, xml, compress_to_fp16=False)
        with open(xml, "rb") as f, open(os.path.join(d, "model.bin"), "rb") as g:
            return f.read(), g.read()


def compile_bytes(xml: bytes, weights: bytes, threads: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """The model of an IR compiled for this CPU (latency mode, ``threads`` or torch's thread count; float parts in
    fp32). Raises ValueError with OpenVINO's reason when it cannot run here."""
    ov = _openvino()
    core = ov.Core()
    try:
        model = core.read_model(xml, ov.Tensor(np.frombuffer(weights, np.uint8).copy()))
        compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY",
                                                     "INFERENCE_NUM_THREADS": threads or torch.get_num_threads()})
    except RuntimeError as e:
        reason = str(e).strip().splitlines()
        raise ValueError(f"OpenVINO {version()} cannot run the int8 model on this CPU: "
                         f"{reason[-1] if reason else type(e).__name__}") from None
    return lambda x: compiled(x)[0]


class EngineModule(nn.Module):
    """A backbone run by the engine: ``forward`` and ``forward_map`` (the same call: the converted method) take and
    give float32 CPU tensors, batch first. Holds no parameters and computes no gradients."""

    int8 = True  # (models.precision.runs_int8)

    def __init__(self, run: Callable[[np.ndarray], np.ndarray], what: str) -> None:
        super().__init__()
        self._run = run
        self.what = what

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu":
            raise ValueError(f"the int8 {self.what} backbone runs on the CPU, got a tensor on {x.device}")
        if x.requires_grad and torch.is_grad_enabled():
            raise ValueError(f"the int8 {self.what} backbone computes no gradients; train from the fp32 checkpoint")
        return torch.from_numpy(np.array(self._run(x.detach().float().contiguous().numpy())))

    forward_map = forward

    def extra_repr(self) -> str:
        return f"{self.what}, {ENGINE} int8"
