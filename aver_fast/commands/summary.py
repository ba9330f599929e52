"""``aver-fast summary``."""
from __future__ import annotations

import argparse

from ..models import MODELS
from ..training import PRESETS

HELP = "print trainable parameters and GFLOPs of a preset"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", choices=list(PRESETS), default="paper")
    p.add_argument("--model", choices=list(MODELS), default="aver")


def run(args: argparse.Namespace) -> int:
    from ..summary import model_summary

    print(model_summary(MODELS[args.model](PRESETS[args.preset].model_config())))
    return 0
