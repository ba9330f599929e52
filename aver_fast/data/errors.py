"""Errors of the data pipeline: every one names the file and the problem."""
from __future__ import annotations

import os


class MediaError(ValueError):
    """A media or annotation file that cannot be used; ``path`` and ``problem`` say which and why."""

    def __init__(self, path: str | os.PathLike, problem: str) -> None:
        self.path, self.problem = str(path), problem
        super().__init__(f"{path}: {problem}")
