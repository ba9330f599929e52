"""Drop-in modules (batch-first ``(B, L, C)``)."""
from .audio_resnet import AudioResNet18
from .avga import AVGA
from .jca import JCA, JCALayer
from .mel import MelSpectrogram
from .r2plus1d import R2Plus1D18
from .tcn import TCN, TemporalBlock
from .tlab import TLAB

__all__ = ["AVGA", "JCA", "JCALayer", "TCN", "TLAB", "AudioResNet18", "MelSpectrogram", "R2Plus1D18", "TemporalBlock"]
