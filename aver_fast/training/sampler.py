"""The order training visits windows in: a seeded permutation per epoch, sharded by rank, resumable mid-epoch."""
from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

SEED_STRIDE = 100003  # epoch e of seed s draws its permutation from seed s * SEED_STRIDE + e


class EpochSampler(Sampler):
    """Indices ``0..n-1``, permuted per epoch (``shuffle``) and sharded ``rank::world``. ``pad`` repeats a few items
    so every rank has as many (training: equal step counts); evaluation shards without padding, so no window counts
    twice. Set ``epoch`` before iterating; ``skip`` drops this rank's first indices (a mid-epoch resume)."""

    def __init__(self, n: int, seed: int, rank: int = 0, world: int = 1, shuffle: bool = True,
                 pad: bool = True) -> None:
        self.n = n
        self.seed = seed
        self.rank = rank
        self.world = world
        self.shuffle, self.pad = shuffle, pad
        self.epoch = 0
        self.skip = 0

    def indices(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * SEED_STRIDE + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        if self.pad:
            order += order[: math.ceil(self.n / self.world) * self.world - self.n]
        return order[self.rank::self.world]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices()[self.skip:])

    def __len__(self) -> int:
        return len(self.indices()) - self.skip
