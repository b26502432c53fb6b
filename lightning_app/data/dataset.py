"""Datasets that fetch a whole batch with one tensor index instead of sample by sample."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset


def batch_collate(batch: Any) -> Any:
    """Return the batch unchanged: ``TableDataset.__getitems__`` already builds whole batches."""
    return batch


class TableDataset(Dataset):
    """Standardised features and targets held as tensors.

    ``DataLoader`` calls ``__getitems__`` with a whole batch of indices (a list or an int64 tensor),
    so a batch costs one indexing operation per tensor; pair it with ``collate_fn=batch_collate``.

    Attributes:
        features: (N, F) float32.
        targets: (N,) float32 for regression, int64 class ids for classification.
        groups: optional (N,) int64 group ids for batch samplers.
    """

    def __init__(self, features: torch.Tensor, targets: torch.Tensor, groups: torch.Tensor | None = None) -> None:
        self.features = features
        self.targets = targets
        self.groups = groups

    def __len__(self) -> int:
        return self.targets.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.features[index], self.targets[index]

    def __getitems__(self, indices: Sequence[int] | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.as_tensor(indices, dtype=torch.long)
        return self.features[index], self.targets[index]


class MemmapTableDataset(TableDataset):
    """Features left in a memory-mapped array and standardised batch by batch as they are read.

    Args:
        source: (N_all, F) array, usually a read-only ``np.memmap``.
        rows: the rows of ``source`` that belong to this split.
        mean, std: per-column statistics from the training split.
    """

    def __init__(
        self,
        source: np.ndarray,
        rows: np.ndarray,
        mean: np.ndarray,
        std: np.ndarray,
        targets: torch.Tensor,
        groups: torch.Tensor | None = None,
    ) -> None:
        super().__init__(features=torch.empty(0), targets=targets, groups=groups)
        self.source = source
        self.rows = rows
        self.mean = mean.astype(np.float32)
        self.std = std.astype(np.float32)

    def _read(self, index: np.ndarray) -> torch.Tensor:
        # Reading rows in file order is much faster on disk; the inverse permutation restores the batch order.
        wanted = self.rows[index]
        order = np.argsort(wanted, kind="stable")
        block = np.empty((wanted.size, self.source.shape[1]), dtype=np.float32)
        block[order] = self.source[wanted[order]]
        return torch.from_numpy((block - self.mean) / self.std)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self._read(np.array([index]))[0], self.targets[index]

    def __getitems__(self, indices: Sequence[int] | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.as_tensor(indices, dtype=torch.long)
        return self._read(index.numpy()), self.targets[index]
