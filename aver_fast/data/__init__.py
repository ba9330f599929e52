"""Data pipeline: media files on disk -> the paper's aligned windows -> model-ready tensors."""
from .alignment import AlignmentConfig, plan_window, segment_bounds, window_starts
from .annotations import read_va, write_va
from .corrupted_copy import corrupt_dataset
from .corruptions import CONDITIONS, TRANSFORMS, Clip, Condition, parse_condition
from .dataset import AffWild2Dataset, Summary, VideoEntry, discover, read_split_list, split_videos
from .errors import MediaError
from .faces import FaceTrack, OnlineFaces, crop_faces, detect_faces, track_faces
from .media import VideoSource, load_audio, write_video
from .noise_reduction import spectral_gate
from .resample import resample
from .synthetic import make_synthetic

__all__ = ["CONDITIONS", "TRANSFORMS", "AffWild2Dataset", "AlignmentConfig", "Clip", "Condition", "FaceTrack",
           "MediaError", "OnlineFaces", "crop_faces", "detect_faces", "track_faces",
           "Summary", "VideoEntry", "VideoSource", "corrupt_dataset", "discover", "load_audio", "make_synthetic",
           "parse_condition", "plan_window", "read_split_list", "read_va", "resample", "segment_bounds",
           "spectral_gate", "split_videos", "window_starts", "write_va", "write_video"]
