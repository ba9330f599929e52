"""``aver-fast backends``."""
from __future__ import annotations

import argparse
import json

HELP = "print which backend each op would use, per device, and why"


def add_arguments(p: argparse.ArgumentParser) -> None:
    del p  # no options


def run(args: argparse.Namespace) -> int:
    del args  # no options
    from ..ops import backends

    print(json.dumps(backends(), indent=2))
    return 0
