"""Triton kernel for the dB log-mel spectrogram of a batch of clips in one launch.

Per (clip, block of frames) program: frame samples are read straight from the waveform (padding applied by index),
the windowed DFT is a matrix product with a cos/sin basis that has the window folded in, the power and the mel
projection are accumulated block by block of frequencies, and dB is taken in the epilogue: the complex spectrogram
never reaches global memory. The per-clip ``top_db`` floor is applied afterwards (a max and a clamp).
float32 arithmetic (IEEE products) whatever the input dtype.
"""
from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from ._common import block
from ._plan import Plan


@triton.jit
def _padded_index(idx, n, PAD_MODE: tl.constexpr):
    """Index into the waveform for a position of the padded signal, and whether it reads a sample (else zero)."""
    if PAD_MODE == 0:  # reflect
        idx = tl.where(idx < 0, -idx, idx)
        idx = tl.where(idx >= n, 2 * (n - 1) - idx, idx)
        ok = (idx >= 0) & (idx < n)
    elif PAD_MODE == 1:  # constant
        ok = (idx >= 0) & (idx < n)
    elif PAD_MODE == 2:  # replicate
        idx = tl.minimum(tl.maximum(idx, 0), n - 1)
        ok = idx >= 0
    else:  # circular
        idx = ((idx % n) + n) % n
        ok = idx >= 0
    return idx, ok


@triton.jit
def _log_mel_fwd(Wav, Cos, Sin, Fb, Out, n_samples, frames, hop, pad, n_start, n_end, n_freqs, n_mels,
                 PAD_MODE: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_F: tl.constexpr,
                 BLOCK_M: tl.constexpr):
    clip = tl.program_id(0)
    t = tl.program_id(1) * BLOCK_T + tl.arange(0, BLOCK_T)
    offs_n = tl.arange(0, BLOCK_N)
    offs_f = tl.arange(0, BLOCK_F)
    offs_m = tl.program_id(2) * BLOCK_M + tl.arange(0, BLOCK_M)  # one block of mel bands per program
    wav = Wav + clip.to(tl.int64) * n_samples
    mel = tl.zeros((BLOCK_T, BLOCK_M), dtype=tl.float32)
    for f0 in range(0, n_freqs, BLOCK_F):
        f = f0 + offs_f
        re = tl.zeros((BLOCK_T, BLOCK_F), dtype=tl.float32)
        im = tl.zeros((BLOCK_T, BLOCK_F), dtype=tl.float32)
        for n0 in range(n_start, n_end, BLOCK_N):
            n = n0 + offs_n
            idx, ok = _padded_index(t[:, None] * hop - pad + n[None, :], n_samples, PAD_MODE)
            x = tl.load(wav + idx, mask=ok & (t[:, None] < frames) & (n[None, :] < n_end), other=0.0)
            x = x.to(tl.float32)
            bmask = (n[:, None] < n_end) & (f[None, :] < n_freqs)
            c = tl.load(Cos + n[:, None] * n_freqs + f[None, :], mask=bmask, other=0.0)
            s = tl.load(Sin + n[:, None] * n_freqs + f[None, :], mask=bmask, other=0.0)
            re += tl.dot(x, c, input_precision="ieee")
            im += tl.dot(x, s, input_precision="ieee")
        power = re * re + im * im
        fb = tl.load(Fb + f[:, None] * n_mels + offs_m[None, :],
                     mask=(f[:, None] < n_freqs) & (offs_m[None, :] < n_mels),
                     other=0.0)
        mel += tl.dot(power, fb, input_precision="ieee")
    # 10 log10(max(mel, 1e-10)); a NaN (from a NaN or Inf sample) stays NaN, as in the reference
    db = 10.0 * tl.log(tl.maximum(mel, 1e-10, propagate_nan=tl.PropagateNan.ALL)) * 0.4342944819032518
    out = Out + clip.to(tl.int64) * n_mels * frames
    tl.store(out + offs_m[None, :] * frames + t[:, None], db.to(Out.dtype.element_ty),
             mask=(t[:, None] < frames) & (offs_m[None, :] < n_mels))


def basis(window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """Window-folded DFT basis ``(n_fft, n_fft//2+1)`` (cos and -sin, float32, built in float64) for a window already
    zero-padded to ``n_fft``, and the window's non-zero range ``[n_start, n_end)``."""
    n_fft = window.shape[0]
    w = window.detach().to(dtype=torch.float64)
    n = torch.arange(n_fft, dtype=torch.float64, device=w.device)[:, None]
    f = torch.arange(n_fft // 2 + 1, dtype=torch.float64, device=w.device)[None, :]
    angle = 2 * math.pi * ((n * f) % n_fft) / n_fft
    cos = (w[:, None] * torch.cos(angle)).float().contiguous()
    sin = (-w[:, None] * torch.sin(angle)).float().contiguous()
    nz = (w != 0).nonzero()
    return cos, sin, int(nz.min()), int(nz.max()) + 1


MAX_BLOCK_M = 128  # mel bands per program; more bands take more programs (the DFT is recomputed per block)


def plan(clips: int, frames: int, n_mels: int, dtype: torch.dtype, pad_mode: int) -> Plan:
    """One program per (clip, 32 frames, up to 128 mel bands), one pipeline stage: <= 20 KB of shared memory."""
    bt, bm = block(frames, hi=32), block(n_mels, hi=MAX_BLOCK_M)
    return Plan(_log_mel_fwd, (clips, triton.cdiv(frames, bt), triton.cdiv(n_mels, bm)),
                dict(PAD_MODE=pad_mode, BLOCK_T=bt, BLOCK_N=32, BLOCK_F=32, BLOCK_M=bm),
                {"Wav": dtype, "Cos": torch.float32, "Sin": torch.float32, "Fb": torch.float32, "Out": dtype},
                floats=())


def forward(waveform: torch.Tensor, dft: tuple[torch.Tensor, torch.Tensor, int, int], filterbank: torch.Tensor,
            hop_length: int, center: bool, pad_mode: int, top_db: float | None, frames: int) -> torch.Tensor:
    """waveform ``(B, samples)``, ``dft`` = :func:`basis` of the window (the op layer caches it with the other
    per-setting constants), filterbank ``(n_fft//2+1, n_mels)`` -> dB ``(B, n_mels, frames)``. ``pad_mode`` indexes
    ``aver_fast.ops.log_mel.PAD_MODES`` and ``frames`` is ``aver_fast.ops.log_mel.num_frames`` (the op layer decides
    both, for every backend)."""
    waveform = waveform.contiguous()
    b, n = waveform.shape
    cos, sin, n_start, n_end = dft
    n_fft = cos.shape[0]
    n_freqs, n_mels = filterbank.shape
    fb = filterbank.to(device=waveform.device, dtype=torch.float32).contiguous()
    out = torch.empty((b, n_mels, frames), dtype=waveform.dtype, device=waveform.device)
    plan(b, frames, n_mels, waveform.dtype, pad_mode).launch(
        waveform, cos, sin, fb, out, n, frames, hop_length, n_fft // 2 if center else 0, n_start, n_end, n_freqs,
        n_mels)
    if top_db is not None:
        out = torch.maximum(out, out.amax(dim=(-2, -1), keepdim=True) - top_db)
    return out
