"""``python -m aver_fast`` is ``aver-fast`` (and ``torchrun ... -m aver_fast train ...`` trains with DDP)."""
import sys

from .cli import main

if __name__ == "__main__":  # importing this module (e.g. walking the package) must not run the command line
    sys.exit(main())
