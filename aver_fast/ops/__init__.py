"""Functional ops: one file per op, each with its reference (``*_ref``) and the public dispatching function."""
from ._registry import backends, using_backend
from .jca_correlation import jca_correlation, jca_correlation_pair, jca_correlation_ref
from .log_mel import log_mel, log_mel_ref, mel_filterbank
from .tlab_attention import tlab_attention, tlab_attention_ref

__all__ = ["backends", "jca_correlation", "jca_correlation_pair", "jca_correlation_ref", "log_mel", "log_mel_ref",
           "mel_filterbank", "tlab_attention", "tlab_attention_ref", "using_backend"]
