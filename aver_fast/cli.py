"""``aver-fast`` command line."""
from __future__ import annotations

import argparse
import json
import sys


def version_report() -> str:
    """aver_fast, torch, triton and CUDA versions, and what the C++ extension was built against and runs with."""
    import torch

    from . import __version__
    from .ops import _ext

    lines = [f"aver_fast {__version__}",
             f"torch {torch.__version__} (CUDA {torch.version.cuda or 'none'}; "
             f"{torch.cuda.device_count() if torch.cuda.is_available() else 'no'} GPU visible)"]
    try:
        import triton
        lines.append(f"triton {triton.__version__}")
    except ImportError:
        lines.append("triton not installed")
    info = _ext.build_info() or {}
    if _ext.LOADED:
        lines.append(f"extension aver_fast._C: built against torch {info.get('torch', 'unknown')}, "
                     f"CPU ISA {_ext.cpu_isa()}")
    else:
        lines.append(f"extension aver_fast._C: not loaded ({_ext.REASON})")
    return "\n".join(lines)


class _VersionAction(argparse.Action):
    def __init__(self, option_strings, dest, **_kwargs):
        super().__init__(option_strings, dest, nargs=0, help="print versions (aver_fast, torch, triton, CUDA, the "
                                                                "extension's build) and exit")

    def __call__(self, parser, _namespace, _values, _option_string=None):
        print(version_report())
        parser.exit()


def main(argv: list[str] | None = None) -> int:
    from .evaluate import BATCH_SIZE
    parser = argparse.ArgumentParser(prog="aver-fast", description="Fast audio-visual emotion recognition (AVER).")
    parser.add_argument("--version", action=_VersionAction)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="write a synthetic benchmark, train the tiny AVER/JCA/LF presets on it and "
                                       "print test CCC on clean and noisy conditions")
    demo.add_argument("--out", default="aver-demo", help="output folder: data/, results.json, timings.json "
                                                         "(default: aver-demo/)")
    demo.add_argument("--steps", type=int, default=200, help="training steps per model (default: 200)")
    demo.add_argument("--batch-size", type=int, default=16, help="batch size (default: 16)")
    demo.add_argument("--videos", type=int, default=10, help="synthetic videos to generate (default: 10)")
    demo.add_argument("--seconds", type=float, default=20.0, help="length of each synthetic video (default: 20)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    demo.add_argument("--models", default="aver,jca,lf", help="comma-separated subset of aver,jca,lf")
    sub.add_parser("backends", help="print which backend each op would use, per device, and why")
    from .train import add_arguments as add_train_arguments
    train = sub.add_parser("train", help="train AVER (or --fusion jca|lf) on an Aff-Wild2-format dataset with the "
                                         "paper's recipe; keys: see aver_fast.train.TrainConfig")
    add_train_arguments(train)
    feats = sub.add_parser("extract-features", help="run the frozen backbones once and cache per-video features "
                                                    "for train --features")
    feats.add_argument("--data", required=True, help="Aff-Wild2-format dataset folder")
    feats.add_argument("--out", required=True, help="feature folder")
    feats.add_argument("--preset", choices=("paper", "tiny"), default="paper")
    feats.add_argument("--fusion", choices=("aver", "jca", "lf"), default="aver")
    feats.add_argument("--backbones", help="checkpoint prefix whose weights to use (default: random init)")
    feats.add_argument("--video-weights", help="torchvision-format r2plus1d_18 state dict file for the video backbone")
    feats.add_argument("--audio-weights",
                       help="resnet18-format state dict file (1-channel conv1) for the audio backbone")
    feats.add_argument("--stride", type=int, help="frames between windows (default: the window length; train "
                                                  "--features uses exactly the windows cached here)")
    ev = sub.add_parser("evaluate", help="CCC per condition for one or more checkpoints (markdown + JSON)")
    ev.add_argument("checkpoints", nargs="+", help="checkpoint prefixes, e.g. runs/aver/best runs/jca/best")
    ev.add_argument("--data", required=True, help="Aff-Wild2-format dataset folder")
    ev.add_argument("--conditions", default="clean", help="comma-separated conditions (presets or specs)")
    ev.add_argument("--videos", help="comma-separated videos (default: each checkpoint's test split)")
    ev.add_argument("--out", default="evaluation", help="folder for evaluation.md and evaluation.json")
    ev.add_argument("--batch-size", type=int, default=BATCH_SIZE,
                    help=f"windows per forward pass; peak memory grows with it (default: {BATCH_SIZE})")
    pr = sub.add_parser("predict", help="per-frame valence/arousal CSV and plots for one video")
    pr.add_argument("video", help="video file or frame folder")
    pr.add_argument("--checkpoint", required=True, help="checkpoint prefix, e.g. runs/aver/best")
    pr.add_argument("--labels", help="annotation file: ground truth drawn dashed")
    pr.add_argument("--out", default="predictions", help="output folder")
    pr.add_argument("--batch-size", type=int, default=BATCH_SIZE,
                    help=f"windows per forward pass; peak memory grows with it (default: {BATCH_SIZE})")
    synth = sub.add_parser("make-synthetic", help="write a synthetic Aff-Wild2-format dataset (mp4 with audio + "
                                                  "VA annotation files) driven by smooth valence/arousal traces")
    synth.add_argument("out", help="output folder (gets videos/, annotations/, synthetic.json)")
    synth.add_argument("--videos", type=int, default=8, help="number of videos (default: 8)")
    synth.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    synth.add_argument("--seconds", type=float, default=30.0, help="length of each video in seconds (default: 30)")
    synth.add_argument("--size", type=int, default=112, help="frame side in pixels (default: 112)")
    corrupt = sub.add_parser("corrupt", help="write a copy of a dataset with a controlled-noise condition applied")
    corrupt.add_argument("input", metavar="IN", help="Aff-Wild2-format dataset folder")
    corrupt.add_argument("output", metavar="OUT", help="output folder (must differ from IN)")
    corrupt.add_argument("--condition", required=True,
                         help="a preset (clean, white-10db, pink-5db, babble-5db, bursts, occlusion, lighting, blur, "
                              "drop-frames, dual) or a spec like 'white:snr_db=5+occlusion:fraction=0.5'")
    corrupt.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    corrupt.add_argument("--skip-bad", action="store_true", help="skip unreadable videos instead of stopping")
    bench = sub.add_parser("bench", help="time every op on CPU (reference vs C++ vs PyTorch-native) and write "
                                         "the markdown table into RESULTS.md")
    bench.add_argument("--out", default="benchmarks/RESULTS.md",
                       help="markdown file to write; an existing file keeps everything outside its CPU section "
                            "(default: benchmarks/RESULTS.md)")
    bench.add_argument("--no-compile", action="store_true", help="skip torch.compile of the references (slow to build)")
    summary = sub.add_parser("summary", help="print trainable parameters and GFLOPs of a preset")
    summary.add_argument("--preset", choices=("paper", "tiny"), default="paper")
    summary.add_argument("--model", choices=("aver", "jca", "lf"), default="aver")
    args = parser.parse_args(argv)

    if args.command == "demo":
        from .demo import run_demo
        models = tuple(m for m in args.models.split(",") if m)
        unknown = [m for m in models if m not in ("aver", "jca", "lf")]
        if unknown:
            parser.error(f"--models: unknown model(s) {unknown}; choose from aver, jca, lf")
        run_demo(args.out, steps=args.steps, batch_size=args.batch_size, seed=args.seed, models=models,
                 videos=args.videos, seconds=args.seconds)
    elif args.command == "backends":
        from .ops import backends
        print(json.dumps(backends(), indent=2))
    elif args.command == "train":
        from .train import run as run_train
        return run_train(args)
    elif args.command == "extract-features":
        from .features import extract_features
        from .train import TrainConfig
        cfg = TrainConfig(preset=args.preset, fusion=args.fusion, video_weights=args.video_weights or "",
                          audio_weights=args.audio_weights or "")
        try:
            weights = None
            if args.backbones:
                from .checkpoint import load_checkpoint
                weights = load_checkpoint(args.backbones)[0]
            elif cfg.video_weights or cfg.audio_weights:
                from .train import build_model
                weights = build_model(cfg).state_dict()
            extract_features(args.data, args.out, cfg.model_config(freeze_backbones=True), cfg.alignment(args.stride),
                             args.fusion, weights)
        except (ValueError, OSError) as e:
            print(f"aver-fast extract-features: {e}", file=sys.stderr)
            return 2
    elif args.command == "evaluate":
        from .evaluate import evaluate, markdown, write_report
        try:
            results = evaluate(args.checkpoints, args.data, args.videos.split(",") if args.videos else None,
                               tuple(c for c in args.conditions.split(",") if c), batch_size=args.batch_size)
        except (ValueError, OSError) as e:
            print(f"aver-fast evaluate: {e}", file=sys.stderr)
            return 2
        write_report(results, args.out)
        print(markdown(results))
    elif args.command == "predict":
        from .predict import predict_video
        try:
            files = predict_video(args.video, args.checkpoint, args.out, args.labels, args.batch_size)
        except (ValueError, OSError) as e:
            print(f"aver-fast predict: {e}", file=sys.stderr)
            return 2
        print(json.dumps(files))
    elif args.command == "make-synthetic":
        from .data import make_synthetic
        names = make_synthetic(args.out, videos=args.videos, seed=args.seed, seconds=args.seconds, size=args.size)
        print(f"wrote {len(names)} videos to {args.out}")
    elif args.command == "corrupt":
        from .data import MediaError, corrupt_dataset, parse_condition
        try:
            parse_condition(args.condition)
            summary = corrupt_dataset(args.input, args.output, args.condition, seed=args.seed,
                                      skip_bad=args.skip_bad)
        except (MediaError, ValueError) as e:
            print(f"aver-fast corrupt: {e}", file=sys.stderr)
            return 2
        print(f"wrote {summary.videos} videos to {args.output} ({args.condition}); {len(summary.skipped)} skipped")
        for path, problem in summary.skipped:
            print(f"  skipped {path}: {problem}")
    elif args.command == "bench":
        from .bench import run_all, write_section
        report = run_all(compile_ref=not args.no_compile)
        write_section(args.out, report)
        print(f"wrote {args.out}")
    elif args.command == "summary":
        from .models import MODELS, AVERConfig
        from .summary import model_summary
        config = AVERConfig.paper() if args.preset == "paper" else AVERConfig.tiny()
        print(model_summary(MODELS[args.model](config)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
