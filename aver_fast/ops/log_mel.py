"""dB-scaled log-mel spectrogram.

``10·log10(max(M |STFT_w(x)|², 1e-10))``, then per item ``max(X, max(X) - top_db)``; w is a periodic Hann window
of ``win_length`` zero-padded (centred) to ``n_fft``, M the ``(n_mels, n_fft//2+1)`` mel filterbank. Generally
(:class:`aver_fast.MelSpectrogram`): ``M |STFT_w(x)|^power``, in dB ``(20/power)·log10(max(·, 1e-10))`` or not.
Shapes: waveform ``(..., samples)`` -> ``(..., n_mels, frames)``,
``frames = 1 + samples // hop_length`` when ``center`` else ``1 + (samples - n_fft) // hop_length``.
"""
from __future__ import annotations

import ast
import functools
import math
import warnings
from dataclasses import dataclass, field

import torch

from . import _autograd, _ext, _functorch, _registry
from ._validation import HALF_DTYPES, autocast_inputs, autocast_off, check_tensor, upcast_half

OP = "log_mel"
AMIN = 1e-10
PAD_MODES = ("reflect", "constant", "replicate", "circular")  # index = the mode code of the C++ and Triton kernels


# ------------------------------------------------------------------------------------------------ filterbank
def hz_to_mel(f: torch.Tensor, mel_scale: str = "slaney") -> torch.Tensor:
    """Hz -> mel: HTK ``2595·log10(1 + f/700)`` or Slaney (linear below 1 kHz, logarithmic above)."""
    if mel_scale == "htk":
        return 2595.0 * torch.log10(1.0 + f / 700.0)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    log_part = min_log_mel + torch.log(f.clamp(min=min_log_hz) / min_log_hz) / logstep
    return torch.where(f >= min_log_hz, log_part, f / f_sp)


def mel_to_hz(m: torch.Tensor, mel_scale: str = "slaney") -> torch.Tensor:
    """mel -> Hz, the inverse of :func:`hz_to_mel`."""
    if mel_scale == "htk":
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    return torch.where(m >= min_log_mel, min_log_hz * torch.exp(logstep * (m - min_log_mel)), f_sp * m)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float,
                   mel_scale: str = "slaney", norm: str | None = "slaney") -> torch.Tensor:
    """Triangular mel filterbank ``(n_fft//2 + 1, n_mels)`` in float64 (librosa's construction).

    Warns when a filter is all zero (its band falls between two FFT bins).
    """
    freqs = torch.linspace(0.0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    m_lo, m_hi = hz_to_mel(torch.tensor([f_min, f_max], dtype=torch.float64), mel_scale)
    mel_f = mel_to_hz(torch.linspace(float(m_lo), float(m_hi), n_mels + 2, dtype=torch.float64), mel_scale)
    fdiff = mel_f.diff()
    ramps = mel_f[:, None] - freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    fb = torch.clamp(torch.minimum(lower, upper), min=0.0)  # (n_mels, n_freqs)
    if norm == "slaney":
        fb = fb * (2.0 / (mel_f[2:] - mel_f[:-2]))[:, None]
    empty = (fb.amax(dim=1) == 0).nonzero().flatten().tolist()
    if empty:
        warnings.warn(f"mel filterbank has all-zero filters {empty} (n_mels={n_mels} too many for n_fft={n_fft} "
                      f"at {sample_rate} Hz with the {mel_scale} scale); those channels will be constant. "
                      "Use fewer mels, a larger n_fft or mel_scale='slaney'.", UserWarning, stacklevel=3)
    return fb.t().contiguous()


# ------------------------------------------------------------------------------------------------ parameters
@dataclass(frozen=True)
class MelParams:
    """Validated log-mel settings (hashable, so backends can cache per-setting constants)."""

    sample_rate: int
    n_fft: int
    win_length: int
    hop_length: int
    n_mels: int
    f_min: float
    f_max: float
    center: bool
    pad_mode: str
    mel_scale: str
    norm: str | None
    top_db: float | None
    power: float = 2.0     # the spectrum's exponent: 2 power, 1 magnitude
    db: bool = True        # (20 / power)·log10(max(mel, 1e-10)), else the mel spectrum itself
    top_db_dims: int = 2   # the top_db floor is per (n_mels, frames) (2), or per (channel, n_mels, frames) (3)

    # The settings the window and filterbank depend on, as one string, made at construction: torch.compile passes a
    # string attribute to the constants cache as a constant, whether the settings were built in the graph or held by
    # a module (whose ints and floats dynamic=True would otherwise treat as symbols).
    constants_key: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "constants_key", repr((self.sample_rate, self.n_fft, self.win_length, self.n_mels,
                                                        self.f_min, self.f_max, self.mel_scale, self.norm)))

    def filterbank(self, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu") -> torch.Tensor:
        fb = mel_filterbank(self.sample_rate, self.n_fft, self.n_mels, self.f_min, self.f_max, self.mel_scale,
                            self.norm)
        return fb.to(dtype=dtype, device=device)


def num_frames(samples: int, n_fft: int, hop_length: int, center: bool) -> int:
    """Frames of a ``samples``-long waveform (the shape rule every backend follows)."""
    return 1 + samples // hop_length if center else 1 + (samples - n_fft) // hop_length


def make_params(sample_rate: int = 44100, n_fft: int = 1024, win_length: int | None = 882,
                hop_length: int | None = 441, n_mels: int = 128, f_min: float = 0.0, f_max: float | None = None,
                center: bool = True, pad_mode: str = "reflect", mel_scale: str = "slaney", norm: str | None = "slaney",
                top_db: float | None = 80.0, power: float = 2.0, db: bool = True, top_db_dims: int = 2) -> MelParams:
    """Validate log-mel settings (errors name the argument) and return them as :class:`MelParams`.

    As torchaudio derives them: ``win_length=None`` -> ``n_fft``, ``hop_length=None`` -> ``win_length // 2``.
    """
    def positive_int(name: str, value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
        return value

    sample_rate = positive_int("sample_rate", sample_rate)
    n_fft = positive_int("n_fft", n_fft)
    win_length = n_fft if win_length is None else positive_int("win_length", win_length)
    if win_length > n_fft:
        raise ValueError(f"win_length={win_length} must be <= n_fft={n_fft}")
    hop_length = positive_int("hop_length", win_length // 2 if hop_length is None else hop_length)
    n_mels = positive_int("n_mels", n_mels)
    f_max = sample_rate / 2 if f_max is None else float(f_max)
    f_min = float(f_min)
    if not 0.0 <= f_min < f_max <= sample_rate / 2:
        raise ValueError(f"need 0 <= f_min < f_max <= sample_rate/2, got f_min={f_min}, f_max={f_max}, "
                         f"sample_rate={sample_rate}")
    if pad_mode not in PAD_MODES:
        raise ValueError(f"pad_mode must be one of {PAD_MODES}, got {pad_mode!r}")
    if mel_scale not in ("slaney", "htk"):
        raise ValueError(f"mel_scale must be 'slaney' or 'htk', got {mel_scale!r}")
    if norm not in ("slaney", None):
        raise ValueError(f"norm must be 'slaney' or None, got {norm!r}")
    if top_db is not None:
        top_db = float(top_db)
        if not top_db >= 0.0:
            raise ValueError(f"top_db must be >= 0 or None, got {top_db}")
        if not db:
            raise ValueError(f"top_db={top_db} floors a dB spectrogram; with db=False pass top_db=None")
    if isinstance(power, bool) or not isinstance(power, (int, float)) or not 0.0 < power < math.inf:
        raise ValueError(f"power must be a positive number (2: power, 1: magnitude), got {power!r}")
    if top_db_dims not in (2, 3):
        raise ValueError(f"top_db_dims must be 2 (per mel spectrogram) or 3 (per item, channels included), "
                         f"got {top_db_dims!r}")
    return MelParams(sample_rate, n_fft, win_length, hop_length, n_mels, f_min, f_max, bool(center), pad_mode,
                     mel_scale, norm, top_db, float(power), bool(db), top_db_dims)


def check_waveform(waveform: torch.Tensor, p: MelParams) -> None:
    check_tensor("waveform", waveform, min_dim=1)
    n = waveform.shape[-1]
    if p.center:
        if p.pad_mode == "reflect" and n <= p.n_fft // 2:
            raise ValueError(f"waveform has {n} samples; pad_mode='reflect' with n_fft={p.n_fft} needs more than "
                             f"{p.n_fft // 2} (zero-pad the clip or use pad_mode='constant')")
        if n == 0:
            raise ValueError("waveform has 0 samples")
    elif n < p.n_fft:
        raise ValueError(f"waveform has {n} samples but center=False needs at least n_fft={p.n_fft}")


# ------------------------------------------------------------------------------------------------ reference
def apply_top_db(db: torch.Tensor, top_db: float | None, dims: int = 2) -> torch.Tensor:
    """Per item, over the last ``dims`` axes (fewer when ``db`` has fewer): ``max(x, max(x) - top_db)``."""
    if top_db is None:
        return db
    axes = tuple(range(-min(dims, db.dim()), 0))
    return torch.maximum(db, db.amax(dim=axes, keepdim=True) - top_db)


def kernel_top_db(p: MelParams, waveform: torch.Tensor) -> float | None:
    """The floor a fused kernel applies per ``(n_mels, frames)``; None when :func:`finish` applies it instead (over
    channels too)."""
    return p.top_db if p.top_db_dims == 2 or waveform.dim() < 2 else None


def finish(out: torch.Tensor, p: MelParams, waveform: torch.Tensor) -> torch.Tensor:
    """A fused kernel's ``(N, n_mels, frames)`` dB output as ``(..., n_mels, frames)``, floored over channels when
    :func:`kernel_top_db` left that to here."""
    out = out.reshape(*waveform.shape[:-1], p.n_mels, out.shape[-1])
    return out if kernel_top_db(p, waveform) is not None else apply_top_db(out, p.top_db, p.top_db_dims)


def overflowed_frames(x: torch.Tensor) -> torch.Tensor:
    """The rule for a finite waveform whose power overflows the dtype (``|x|`` beyond ~1e17 in float32): every band
    of such a frame is NaN, in every backend (a dense product gives 0·inf = NaN in some bands and inf in others,
    a sparse one inf only). ``x``: mel power or dB ``(N, n_mels, frames)``; with ``top_db`` the NaN then spreads
    to the whole item, as for a NaN sample."""
    if x.device.type == "cpu" and not _functorch.active() and not torch.compiler.is_compiling() \
            and bool(torch.isfinite(x).all()):
        return x  # the common case, checked without a device sync (no data-dependent branch under vmap or compile)
    return x.masked_fill((~torch.isfinite(x)).any(dim=-2, keepdim=True), float("nan"))


def padded_window(window: torch.Tensor, n_fft: int) -> torch.Tensor:
    """A ``(win_length,)`` window zero-padded, centred, to ``(n_fft,)`` (as ``torch.stft`` pads it)."""
    left = (n_fft - window.shape[0]) // 2
    return torch.nn.functional.pad(window, (left, n_fft - window.shape[0] - left))


def _constants(p: MelParams, dtype: torch.dtype, device: torch.device, dft: bool = False,
               given: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple:
    """The per-setting constants: the Hann window of ``win_length``, the same zero-padded (centred) to ``n_fft``,
    the ``(n_freqs, n_mels)`` filterbank and, with ``dft``, the Triton kernel's window-folded DFT basis
    (``aver_fast.kernels.log_mel.basis``). From ``given`` (window, filterbank; a module's buffers) when they are in
    ``dtype`` on ``device``, else from the one cache (constants to torch.compile too)."""
    if given is not None and not dft and all(t.dtype == dtype and t.device == device for t in given):
        window, fb = given
        return window, padded_window(window, p.n_fft), fb
    # strings, not ints or dtype/device objects: what dynamo hands to assume_constant_result in every case
    return _cached_constants(p.constants_key, str(dtype).removeprefix("torch."), str(device), dft)


@functools.lru_cache(maxsize=32)
@torch.compiler.assume_constant_result  # inside the cache: dynamo traces lru_cache wrappers, then sees the mark
def _cached_constants(key: str, dtype_name: str, device_name: str, dft: bool):
    sample_rate, n_fft, win_length, n_mels, f_min, f_max, mel_scale, norm = ast.literal_eval(key)
    dtype, device = getattr(torch, dtype_name), torch.device(device_name)
    window = torch.hann_window(win_length, periodic=True, dtype=torch.float64)
    padded = padded_window(window, n_fft)
    fb = mel_filterbank(sample_rate, n_fft, n_mels, f_min, f_max, mel_scale, norm)
    out = (window.to(dtype=dtype, device=device), padded.to(dtype=dtype, device=device),
           fb.to(dtype=dtype, device=device))
    if dft:
        from ..kernels import log_mel as kernel  # lazily: importing it imports triton

        out += (kernel.basis(padded.to(device=device)),)
    return out


def log_mel_ref_params(waveform: torch.Tensor, p: MelParams, given: tuple | None = None) -> torch.Tensor:
    """Reference through ``torch.stft``: waveform ``(..., samples)`` -> ``(..., n_mels, frames)``; ``given``: see
    :func:`_constants`."""
    (x,) = upcast_half(waveform)
    lead = x.shape[:-1]
    frames = num_frames(x.shape[-1], p.n_fft, p.hop_length, p.center)
    if x.numel() == 0:  # an empty batch: an empty result, as every backend gives
        return waveform.new_empty((*lead, p.n_mels, frames))
    x = x.reshape(-1, x.shape[-1])
    window, _, fb = _constants(p, x.dtype, x.device, given=given)
    spec = torch.stft(x, p.n_fft, p.hop_length, p.win_length, window, center=p.center,
                      pad_mode=p.pad_mode, normalized=False, onesided=True, return_complex=True)
    power = spec.real.square() + spec.imag.square()  # (N, n_freqs, frames)
    if p.power != 2.0:
        power = power.sqrt() if p.power == 1.0 else power.pow(p.power / 2)
    mel = overflowed_frames(torch.matmul(fb.t(), power))  # (N, n_mels, frames)
    mel = mel.reshape(*lead, p.n_mels, mel.shape[-1])
    if not p.db:
        return mel.to(waveform.dtype)
    db = (20.0 / p.power) * torch.log10(torch.clamp(mel, min=AMIN))
    return apply_top_db(db, p.top_db, p.top_db_dims).to(waveform.dtype)


def log_mel_ref(waveform: torch.Tensor, sample_rate: int = 44100, n_fft: int = 1024, win_length: int | None = 882,
                hop_length: int | None = 441, n_mels: int = 128, f_min: float = 0.0, f_max: float | None = None,
                center: bool = True, pad_mode: str = "reflect", mel_scale: str = "slaney",
                norm: str | None = "slaney", top_db: float | None = 80.0) -> torch.Tensor:
    """Reference log-mel (``torch.stft`` + filterbank matmul); same arguments as :func:`log_mel`."""
    p = make_params(sample_rate, n_fft, win_length, hop_length, n_mels, f_min, f_max, center, pad_mode, mel_scale,
                    norm, top_db)
    check_waveform(waveform, p)
    return log_mel_ref_params(waveform, p)


def log_mel(waveform: torch.Tensor, sample_rate: int = 44100, n_fft: int = 1024, win_length: int | None = 882,
            hop_length: int | None = 441, n_mels: int = 128, f_min: float = 0.0, f_max: float | None = None,
            center: bool = True, pad_mode: str = "reflect", mel_scale: str = "slaney", norm: str | None = "slaney",
            top_db: float | None = 80.0, backend: str | None = None, *, power: float = 2.0, db: bool = True,
            top_db_dims: int = 2) -> torch.Tensor:
    """dB log-mel spectrogram of ``waveform (..., samples)`` -> ``(..., n_mels, frames)``.

    Periodic Hann window of ``win_length`` zero-padded to ``n_fft``; power spectrum; mel filterbank (``mel_scale``
    "slaney" or "htk", ``norm`` "slaney" (area) or None); ``10·log10(max(p, 1e-10))``; then, per item,
    ``max(x, x.max() - top_db)`` unless ``top_db`` is None. ``f_max`` defaults to ``sample_rate / 2``;
    ``win_length=None`` to ``n_fft``, ``hop_length=None`` to ``win_length // 2``.
    Defaults are the paper's (44.1 kHz, window 882, hop 441, 128 mels). Under ``torch.autocast`` it computes and
    returns float32. ``backend``: see :func:`aver_fast.tlab_attention`. ``power`` (1: magnitude), ``db`` (False:
    the mel spectrum itself, ``top_db`` None) and ``top_db_dims`` (3: the floor spans the channels ``(..., C,
    samples)`` of one item too, as torchaudio's) as in :class:`aver_fast.MelSpectrogram`.
    """
    p = make_params(sample_rate, n_fft, win_length, hop_length, n_mels, f_min, f_max, center, pad_mode, mel_scale,
                    norm, top_db, power, db, top_db_dims)
    return log_mel_params(waveform, p, backend)


def log_mel_params(waveform: torch.Tensor, p: MelParams, backend: str | None = None,
                   given: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """:func:`log_mel` with settings already validated by :func:`make_params`; ``given`` (window, filterbank): a
    module's buffers, used when they are in the compute dtype (see :func:`_constants`)."""
    (waveform,) = autocast_inputs(waveform, dtype=torch.float32)  # dB over 100+ dB of range: float32 under autocast
    check_waveform(waveform, p)
    with autocast_off(waveform):
        return _registry.select(OP, waveform.device, waveform.dtype, backend, (waveform, p, given)).fn(waveform, p,
                                                                                                       given)



# ------------------------------------------------------------------------------------------------ fused backends
def _nonfinite_frames(waveform: torch.Tensor, out: torch.Tensor, p: MelParams) -> torch.Tensor:
    """The reference's NaN rule for the fast kernels' ``(N, n_mels, frames)`` output: a frame whose ``n_fft`` samples
    (padding included) hold a NaN or Inf is NaN in every band (``torch.stft`` multiplies the window's zeros too,
    and 0·Inf is NaN; the kernels skip those zeros), and with ``top_db`` its whole item is (the floor is NaN)."""
    wav = waveform.reshape(-1, waveform.shape[-1])
    if wav.device.type == "cpu" and not _functorch.active() and not torch.compiler.is_compiling() \
            and bool(torch.isfinite(wav).all()):
        return out  # the common case, checked without a device sync (no data-dependent branch under vmap or compile)
    bad = (~torch.isfinite(wav)).to(out.dtype if out.dtype.is_floating_point else torch.float32)[:, None]
    if p.center:
        bad = torch.nn.functional.pad(bad, (p.n_fft // 2, p.n_fft // 2), mode=p.pad_mode)
    frames = bad[:, 0].unfold(-1, p.n_fft, p.hop_length).amax(-1)[:, : out.shape[-1]] > 0  # (N, frames)
    if kernel_top_db(p, waveform) is not None:
        frames = frames.any(-1, keepdim=True).expand_as(frames)
    return out.masked_fill(frames[:, None, :], float("nan"))


def _fused_accepts(waveform: torch.Tensor, p: MelParams, given: tuple | None = None) -> str | None:
    if waveform.requires_grad and torch.is_grad_enabled():
        return "the fused kernels have no backward; a waveform that requires grad goes through the reference"
    if _functorch.forward_mode():
        return "the fused kernels carry no tangents; under forward-mode AD (jvp, jacfwd) the reference runs"
    if p.power != 2.0 or not p.db:
        return f"the fused kernels compute dB of the power spectrum (got power={p.power}, db={p.db})"
    return None


# ------------------------------------------------------------------------------------------------ C++ backend
def _cpp(waveform: torch.Tensor, p: MelParams, given: tuple | None = None) -> torch.Tensor:
    """Launch ``torch.ops.aver_fast.log_mel`` on a ``(N, samples)`` view; float16/bfloat16 are computed in
    float32."""
    if waveform.dtype in HALF_DTYPES:
        return _cpp(waveform.float(), p, given).to(waveform.dtype)
    _, window, fb = _constants(p, waveform.dtype, waveform.device, given=given)
    n = waveform.shape[-1]
    frames = num_frames(n, p.n_fft, p.hop_length, p.center)
    out = torch.ops.aver_fast.log_mel(waveform.reshape(-1, n), window, fb, p.hop_length, p.center,
                                      PAD_MODES.index(p.pad_mode), kernel_top_db(p, waveform), frames)
    return finish(_nonfinite_frames(waveform, overflowed_frames(out), p), p, waveform)


def _cpp_accepts(waveform: torch.Tensor, p: MelParams, given: tuple | None = None) -> str | None:
    if p.n_fft & (p.n_fft - 1) or p.n_fft < 2:
        return f"the C++ kernel's FFT needs n_fft to be a power of two (got {p.n_fft})"
    return _fused_accepts(waveform, p)


if _ext.LOADED:
    @torch.library.register_fake("aver_fast::log_mel")
    def _fake(waveform, window, filterbank, hop_length, center, pad_mode, top_db, frames):
        return waveform.new_empty((waveform.shape[0], filterbank.shape[1], frames))

    torch.library.register_autograd("aver_fast::log_mel", _autograd.no_backward(OP), setup_context=_autograd.no_setup)
    _functorch.register_vmap("aver_fast::log_mel", (_functorch.BATCHED, _functorch.CONSTANT, _functorch.CONSTANT)
                             + (None,) * 5, fold=True)


# ------------------------------------------------------------------------------------------------ Triton backend
@torch.library.custom_op("aver_fast::log_mel_triton", mutates_args=())
def _triton_forward(waveform: torch.Tensor, dft_cos: torch.Tensor, dft_sin: torch.Tensor, n_start: int, n_end: int,
                    filterbank: torch.Tensor, hop_length: int, center: bool, pad_mode: int, top_db: float | None,
                    frames: int) -> torch.Tensor:
    """``aver_fast.kernels.log_mel`` on ``(N, samples)`` with the DFT basis ``(dft_cos, dft_sin, n_start, n_end)``
    of :func:`_constants`."""
    from ..kernels import log_mel as kernel
    return kernel.forward(waveform, (dft_cos, dft_sin, n_start, n_end), filterbank, hop_length, center, pad_mode,
                          top_db, frames)


@_triton_forward.register_fake
def _(waveform, dft_cos, dft_sin, n_start, n_end, filterbank, hop_length, center, pad_mode, top_db, frames):
    return waveform.new_empty((waveform.shape[0], filterbank.shape[1], frames))


_triton_forward.register_autograd(_autograd.no_backward(OP), setup_context=_autograd.no_setup)
_functorch.register_vmap("aver_fast::log_mel_triton", (_functorch.BATCHED,) + (_functorch.CONSTANT,) * 2 + (None,) * 2
                         + (_functorch.CONSTANT,) + (None,) * 5, fold=True)


def _triton(waveform: torch.Tensor, p: MelParams, given: tuple | None = None) -> torch.Tensor:
    _, _, fb, (cos, sin, n_start, n_end) = _constants(p, torch.float32, waveform.device, dft=True)
    n = waveform.shape[-1]
    frames = num_frames(n, p.n_fft, p.hop_length, p.center)
    out = torch.ops.aver_fast.log_mel_triton(waveform.reshape(-1, n), cos, sin, n_start, n_end, fb, p.hop_length,
                                             p.center, PAD_MODES.index(p.pad_mode), kernel_top_db(p, waveform), frames)
    return finish(_nonfinite_frames(waveform, overflowed_frames(out), p), p, waveform)


# ------------------------------------------------------------------------------------------------ backend table
_registry.register(OP, _registry.Backend("reference", log_mel_ref_params))
_registry.register(OP, _registry.Backend("cpp", _cpp, _ext.cpp_available, _ext.cpu_kernels, _cpp_accepts,
                                         precision=_ext.cpu_half_outside))
_registry.register(OP, _registry.Backend("triton", _triton, _ext.triton_available, _ext.triton_device,
                                         _fused_accepts, auto_devices=("cuda",)))
