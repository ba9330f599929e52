"""``aver-fast`` command line."""
from __future__ import annotations

import argparse
import sys

from .commands import (
    backends,
    bench,
    check_gpu_build,
    corrupt,
    demo,
    evaluate,
    export,
    extract_features,
    make_synthetic,
    predict,
    quantize,
    summary,
    train,
)


def version_report() -> str:
    """aver_fast, torch, triton and CUDA versions, and what the C++ extension was built against and runs with."""
    import torch

    from ._version import __version__
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


COMMANDS = {"demo": demo, "train": train, "evaluate": evaluate, "predict": predict,
            "extract-features": extract_features, "make-synthetic": make_synthetic, "corrupt": corrupt,
            "bench": bench, "summary": summary, "backends": backends, "check-gpu-build": check_gpu_build,
            "export": export, "quantize": quantize}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aver-fast", description="Fast audio-visual emotion recognition (AVER).")
    parser.add_argument("--version", action=_VersionAction)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, command in COMMANDS.items():
        command.add_arguments(sub.add_parser(name, help=command.HELP, description=command.__doc__,
                                             formatter_class=argparse.RawDescriptionHelpFormatter))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command. Expected failures (bad input, unusable files: ``ValueError``/``OSError``) print one line
    naming the problem and exit 2; an error with an ``exit_code`` (training diverged: 3) exits with it; Ctrl-C 130."""
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command].run(args)
    except KeyboardInterrupt:
        return 130
    except (ValueError, OSError) as e:
        print(f"aver-fast {args.command}: {e}", file=sys.stderr)
        return 2
    except Exception as e:
        if not isinstance(getattr(e, "exit_code", None), int):
            raise
        print(f"aver-fast {args.command}: {e}", file=sys.stderr)
        return e.exit_code


if __name__ == "__main__":
    sys.exit(main())
