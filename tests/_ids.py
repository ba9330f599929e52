"""Readable parametrisation ids: dtypes as ``fp32``, settings as ``sr16000-nfft512-mels40``, never ``case0``."""
import torch

DTYPE_IDS = {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float32: "fp32", torch.float64: "fp64"}
SHORT = {"sample_rate": "sr", "n_fft": "nfft", "win_length": "win", "hop_length": "hop", "n_mels": "mels",
         "pad_mode": "pad", "mel_scale": "", "top_db": "topdb", "f_min": "fmin", "f_max": "fmax", "center": "center",
         "norm": "norm"}


def dtype_id(dtype: torch.dtype) -> str:
    return DTYPE_IDS[dtype]


def settings_id(settings: dict) -> str:
    """``dict(sample_rate=16000, n_fft=512, mel_scale="htk")`` -> ``sr16000-nfft512-htk``; ``{}`` -> ``defaults``."""
    return "-".join(f"{SHORT.get(k, k)}{v}" for k, v in settings.items()) or "defaults"


def shape_id(shape: tuple[int, ...]) -> str:
    """``(2, 3, 16, 60)`` -> ``2x3x16x60``."""
    return "x".join(map(str, shape))
