"""``aver-fast train``: the paper's recipe by default (Adam 1e-4, weight decay 1e-5, batch 16, 30 epochs, lr x 0.9
from epoch 15 and every 5 epochs after, ``1 - mean CCC``), model selection on validation mean CCC, JSONL log, atomic
checkpoints, bit-exact ``--resume`` on CPU, Ctrl-C saves a resumable checkpoint; under ``torchrun`` it trains with
DistributedDataParallel (rank 0 logs and saves; validation CCC is computed on gathered predictions).

    aver-fast train --data DIR [--config run.toml] [--set key=value ...]
    torchrun --nproc_per_node 2 -m aver_fast train --data DIR ...

Exit 0 and the best validation metrics as JSON, 2 on bad input or an unusable checkpoint, 3 when training diverged,
130 on Ctrl-C (after saving a resumable checkpoint). The settings are :class:`aver_fast.training.TrainConfig`, the
loop :mod:`aver_fast.training.loop`.
"""
from __future__ import annotations

import argparse
import json

from ..data.faces import FACE_HELP, FACE_MODES
from ..models import MODELS
from ..training import PRESETS, TrainConfig, distributed, load_config, train

HELP = "train AVER (or --fusion jca|lf) on an Aff-Wild2-format dataset with the paper's recipe; keys: see " \
       "aver_fast.training.TrainConfig"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="TOML file with TrainConfig keys")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config key (repeatable), e.g. --set epochs=5")
    p.add_argument("--data", help="Aff-Wild2-format dataset folder")
    p.add_argument("--out", help="run folder: log.jsonl and the checkpoints last and best")
    p.add_argument("--features", help="train the fusion on cached backbone features (aver-fast extract-features)")
    p.add_argument("--fusion", choices=list(MODELS), help=f"the model (default: {TrainConfig.fusion})")
    p.add_argument("--preset", choices=list(PRESETS), help=f"model and data sizes (default: {TrainConfig.preset})")
    p.add_argument("--no-tcn", action="store_true", help="ablation: TLABs without TCN")
    p.add_argument("--no-lstm", action="store_true", help="ablation: TLABs without LSTM")
    p.add_argument("--no-attention", action="store_true", help="ablation: TLABs without attention")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last (bit-exact on CPU)")
    p.add_argument("--faces", choices=FACE_MODES, help=FACE_HELP["dataset"] + " (default: auto)")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The TOML file, then ``--set`` overrides, then the explicit flags."""
    values = dict(data=args.data, out=args.out, features=args.features, fusion=args.fusion, preset=args.preset,
                  faces=args.faces)
    for flag, key in (("no_tcn", "use_tcn"), ("no_lstm", "use_lstm"), ("no_attention", "use_attention")):
        if getattr(args, flag):
            values[key] = False
    return load_config(args.config, args.set, **values)


def run(args: argparse.Namespace) -> int:
    try:
        best = train(config_from_args(args), resume=args.resume)
    finally:
        distributed.shutdown()
    print(json.dumps({"best": best}))
    return 0
