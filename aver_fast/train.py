"""``python -m aver_fast.train ...`` (0.1's torchrun line) is ``aver-fast train ...``. The training loop is
:mod:`aver_fast.commands.train`, its settings :class:`aver_fast.config.TrainConfig`."""
import sys

from .commands.train import TrainingDiverged, train

__all__ = ["TrainingDiverged", "train"]

if __name__ == "__main__":
    from .cli import main

    sys.exit(main(["train", *sys.argv[1:]]))
