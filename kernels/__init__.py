"""Triton kernels, installed as ``aver_fast.kernels`` (one file per op)."""
