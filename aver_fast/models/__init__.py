"""Models: AVER and the paper's baselines, all with ``model(video, audio)`` and ``model.forward_features``."""
from .aver import AVER
from .base import AVModel, OnFeatures, RegressionHead
from .baselines import JCABaseline, LeaderFollower
from .config import AVERConfig
from .public_code import PublicKeys, load_public_state_dict

MODELS = {"aver": AVER, "jca": JCABaseline, "lf": LeaderFollower}

__all__ = ["AVER", "AVERConfig", "AVModel", "JCABaseline", "LeaderFollower", "MODELS", "OnFeatures", "PublicKeys",
           "RegressionHead", "load_public_state_dict"]
