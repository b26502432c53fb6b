"""The baseline batch samplers: a seeded shuffle and the unshuffled dataset order."""

from __future__ import annotations

import torch
from typing_extensions import override

from lightning_app.samplers.base import EpochBatchSampler


class RandomBatchSampler(EpochBatchSampler):
    """Batches of a fresh seeded permutation each epoch; every sample is used once per epoch."""

    @override
    def _build_epoch(self, epoch: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randperm(self.num_samples, generator=generator)


class SequentialBatchSampler(EpochBatchSampler):
    """Batches in dataset order, the same every epoch; shows what sorted, unshuffled data does."""

    @override
    def _build_epoch(self, epoch: int, generator: torch.Generator) -> torch.Tensor:
        return torch.arange(self.num_samples)
