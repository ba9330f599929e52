"""``aver-fast extract-features``."""
from __future__ import annotations

import argparse

from ..data.faces import FACE_HELP, FACE_MODES
from ..models import MODELS
from ..training import PRESETS, TrainConfig, build_model

HELP = "run the frozen backbones once and cache per-video features for train --features"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="Aff-Wild2-format dataset folder")
    p.add_argument("--out", required=True, help="feature folder")
    p.add_argument("--preset", choices=list(PRESETS), default=TrainConfig.preset)
    p.add_argument("--fusion", choices=list(MODELS), default=TrainConfig.fusion)
    p.add_argument("--backbones", help="checkpoint prefix whose weights to use (default: random init)")
    p.add_argument("--video-weights", help="torchvision-format r2plus1d_18 state dict file for the video backbone")
    p.add_argument("--audio-weights", help="resnet18-format state dict file (1-channel conv1) for the audio backbone")
    p.add_argument("--faces", choices=FACE_MODES, default="auto", help=FACE_HELP["dataset"] + " (default: auto)")
    p.add_argument("--stride", type=int, help="frames between windows (default: the window length; train "
                                              "--features uses exactly the windows cached here)")


def run(args: argparse.Namespace) -> int:
    from ..checkpoint import load_checkpoint
    from ..training import distributed
    from ..training.features import extract_features

    cfg = TrainConfig(preset=args.preset, fusion=args.fusion, video_weights=args.video_weights or "",
                      audio_weights=args.audio_weights or "")
    weights = None
    if args.backbones:
        weights = load_checkpoint(args.backbones)[0]
    elif cfg.video_weights or cfg.audio_weights:
        weights = build_model(cfg).state_dict()
    rank, world = distributed.init("gloo")  # under torchrun: the videos are shared among the processes
    try:
        extract_features(args.data, args.out, cfg.model_config(freeze_backbones=True), cfg.alignment(args.stride),
                         args.fusion, weights, faces=args.faces, rank=rank, world=world,
                         log=print if rank == 0 else (lambda *_: None))
    finally:
        distributed.shutdown()
    return 0
