"""The in-memory form of a loaded dataset, and the checks every source's output must pass."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from lightning_app.errors import ConfigError


@dataclass
class Table:
    """Features and target of a whole dataset, before splitting.

    Attributes:
        features: (N, F) numeric array; may be a read-only ``np.memmap``.
        target: (N,) array of regression values or class labels.
        feature_names: one name per feature column.
        origin: where the data came from, used in error messages (a file path or a generator name).
        target_name: the target column's name, used in error messages.
        groups: optional (N,) int64 group ids (for example the class of a synthetic sample or a
            group column of a file), used by batch samplers that compose batches by group.
        task_hint: the task of the source's data when the source defines it, or None to infer it from the target.
    """

    features: np.ndarray
    target: np.ndarray
    feature_names: list[str]
    origin: str
    target_name: str = "target"
    groups: np.ndarray | None = None
    task_hint: str | None = None

    def __post_init__(self) -> None:
        if self.features.ndim != 2:
            raise ConfigError(
                f"features from {self.origin} have shape {tuple(self.features.shape)}, expected "
                "(samples, features); reshape them to two dimensions"
            )
        num_rows = self.features.shape[0]
        if num_rows == 0:
            raise ConfigError(f"{self.origin} contains no rows; point the source at a non-empty dataset")
        if self.target.shape != (num_rows,):
            raise ConfigError(
                f"target from {self.origin} has shape {tuple(self.target.shape)}, expected "
                f"({num_rows},) to match the features; give one target value per row"
            )
        if self.groups is not None and self.groups.shape != (num_rows,):
            raise ConfigError(
                f"groups from {self.origin} have shape {tuple(self.groups.shape)}, expected ({num_rows},)"
            )


def find_non_finite(values: np.ndarray, chunk_rows: int = 1 << 20) -> tuple[int, int] | None:
    """Return (row, column) of the first NaN or Inf in a 1-D or 2-D array, or None.

    Reads the array in chunks of rows so that a memory-mapped array larger than RAM can be checked.
    """
    for start in range(0, values.shape[0], chunk_rows):
        chunk = np.asarray(values[start : start + chunk_rows])
        bad = ~np.isfinite(chunk)
        if bad.any():
            position = np.argwhere(bad)[0]
            column = int(position[1]) if chunk.ndim == 2 else 0
            return start + int(position[0]), column
    return None


def check_finite(table: Table, describe_row: Callable[[int], str] = "row {}".format) -> None:
    """Raise ConfigError naming the origin, column and row of the first NaN or Inf value.

    ``describe_row`` turns a 0-based row index into the words used in the message, so that a file
    source can name the line a user sees in an editor.
    """
    found = find_non_finite(table.features)
    if found is not None:
        row, column = found
        raise ConfigError(
            f"{table.origin}: feature column '{table.feature_names[column]}' has a NaN or Inf value at "
            f"{describe_row(row)}; remove or impute that row before training"
        )
    if np.issubdtype(table.target.dtype, np.number):
        found = find_non_finite(table.target)
        if found is not None:
            raise ConfigError(
                f"{table.origin}: target column '{table.target_name}' has a NaN or Inf value at "
                f"{describe_row(found[0])}; remove that row before training"
            )
