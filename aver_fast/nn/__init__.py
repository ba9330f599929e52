"""Drop-in modules (batch-first ``(B, L, C)``)."""
from .audio_resnet import AudioResNet18
from .avga import AVGA
from .jca import JCA, FeatureCoAttentionLayer, JCALayer
from .lstm import BiLSTM
from .mel import MelSpectrogram
from .r2plus1d import R2Plus1D18
from .tcn import TCN, TemporalBlock
from .tlab import TLAB

__all__ = ["AVGA", "AudioResNet18", "BiLSTM", "FeatureCoAttentionLayer", "JCA", "JCALayer", "MelSpectrogram",
           "R2Plus1D18", "TCN", "TLAB", "TemporalBlock"]
