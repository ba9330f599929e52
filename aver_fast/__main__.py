"""``python -m aver_fast`` is ``aver-fast`` (and ``torchrun ... -m aver_fast train ...`` trains with DDP)."""
import sys

from .cli import main

sys.exit(main())
