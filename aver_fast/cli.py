"""``aver-fast`` command line."""
from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="aver-fast", description="Fast audio-visual emotion recognition (AVER).")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="train the tiny AVER/JCA/LF presets on generated data and print test CCC")
    demo.add_argument("--out", default="aver-demo", help="output folder for results.json (default: aver-demo/)")
    demo.add_argument("--steps", type=int, default=150, help="training steps per model (default: 150)")
    demo.add_argument("--batch-size", type=int, default=8, help="batch size (default: 8)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    demo.add_argument("--models", default="aver,jca,lf", help="comma-separated subset of aver,jca,lf")
    sub.add_parser("backends", help="print which backend each op would use, per device, and why")
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
        run_demo(args.out, steps=args.steps, batch_size=args.batch_size, seed=args.seed, models=models)
    elif args.command == "backends":
        from .ops import backends
        print(json.dumps(backends(), indent=2))
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
