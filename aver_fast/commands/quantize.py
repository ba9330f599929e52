"""``aver-fast quantize CKPT --data DIR --out QCKPT``: a checkpoint whose backbones run in int8 (OpenVINO, NNCF
post-training quantization), calibrated on windows of DIR prepared as ``predict`` prepares them, and written only
when its predictions on held-out videos agree with fp32 (the report is printed and stored in QCKPT). ``predict``
and ``evaluate`` run it in int8 (``--precision auto``); needs ``pip install 'aver-fast[int8]'``."""
from __future__ import annotations

import argparse
import json

from ..data.faces import FACE_HELP, FACE_MODES
from ..quantization import CALIBRATION_WINDOWS, HELD_OUT_WINDOWS, MIN_CCC

HELP = "int8 backbones for fast CPU prediction, calibrated and checked on a dataset"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="fp32 checkpoint prefix, e.g. runs/aver/best")
    p.add_argument("--data", required=True, help="Aff-Wild2-format dataset folder to calibrate and check on")
    p.add_argument("--out", required=True, help="checkpoint prefix to write, e.g. runs/aver/int8 (new, or one "
                                                "quantize wrote)")
    p.add_argument("--videos", type=int, help="videos of --data to use, spread over their sorted names (default: "
                                              "all); the checkpoint's test videos (else every fourth) are held out "
                                              "to measure the accuracy")
    p.add_argument("--faces", choices=FACE_MODES, help=FACE_HELP["dataset"] + " (default: what the checkpoint's "
                                                                              "run used)")
    p.add_argument("--min-ccc", type=float, default=MIN_CCC,
                   help=f"refuse to write unless CCC(fp32, int8) of valence and of arousal on the held-out windows "
                        f"reaches this (default: {MIN_CCC})")
    p.add_argument("--calibration-windows", type=int, default=CALIBRATION_WINDOWS,
                   help=f"windows that calibrate the int8 ranges (default: {CALIBRATION_WINDOWS})")
    p.add_argument("--held-out-windows", type=int, default=HELD_OUT_WINDOWS,
                   help=f"windows of the held-out videos the report is measured on (default: {HELD_OUT_WINDOWS})")


def run(args: argparse.Namespace) -> int:
    from ..quantization import quantize_checkpoint

    report = quantize_checkpoint(args.checkpoint, args.data, args.out, args.videos, args.faces, args.min_ccc,
                                 args.calibration_windows, args.held_out_windows)
    print(json.dumps(report))
    return 0
