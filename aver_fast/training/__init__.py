"""Training: the run's settings (:class:`TrainConfig`, the model-size ``PRESETS``), the cached-feature dataset, and
the loop of ``aver-fast train`` as separate steps (prepare, epoch, validation, checkpoints), which the demo shares."""
from . import distributed
from .config import PRESETS, Preset, TrainConfig, build_model, load_config
from .features import FeatureDataset, extract_features
from .loop import TrainingDiverged, build_datasets, prepare, train
from .resume import RESUMABLE_CHANGES, check_resumable
from .sampler import EpochSampler
from .steps import lr_factor, optimizer, validate

__all__ = ["PRESETS", "distributed", "RESUMABLE_CHANGES", "EpochSampler", "FeatureDataset", "Preset", "TrainConfig",
           "TrainingDiverged", "build_datasets", "build_model", "check_resumable", "extract_features", "load_config",
           "lr_factor", "optimizer", "prepare", "train", "validate"]
