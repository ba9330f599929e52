"""aver_fast: fast audio-visual emotion recognition (AVER, Moon et al., CMC 2025) for PyTorch."""
from . import models, nn, ops
from ._version import __version__
from .metrics import CCCLoss, ccc
from .models import AVER, AVERConfig
from .nn import JCA, TLAB, MelSpectrogram
from .ops import backends, jca_correlation, log_mel, tlab_attention, using_backend
from .summary import model_summary

__all__ = ["AVER", "AVERConfig", "CCCLoss", "JCA", "MelSpectrogram", "TLAB", "backends", "ccc", "jca_correlation",
           "__version__", "log_mel", "model_summary", "models", "nn", "ops", "tlab_attention", "using_backend"]
