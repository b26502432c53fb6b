"""Seeded train/validation/test split, stratified by class, and standardisation statistics."""

from __future__ import annotations

import numpy as np

from lightning_app.errors import ConfigError


def check_fractions(val_fraction: float, test_fraction: float) -> None:
    """Raise ConfigError unless 0 < val_fraction, 0 <= test_fraction and their sum is below 1."""
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"data.val_fraction is {val_fraction}, expected a value in (0, 1) such as 0.2")
    if not 0.0 <= test_fraction < 1.0:
        raise ConfigError(f"data.test_fraction is {test_fraction}, expected a value in [0, 1) such as 0.2")
    if val_fraction + test_fraction >= 1.0:
        raise ConfigError(
            f"data.val_fraction + data.test_fraction is {val_fraction + test_fraction}, expected below 1 "
            "so that training keeps some rows; lower one of them"
        )


def split_indices(
    num_rows: int,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    labels: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return sorted row indices of the train, validation and test parts.

    With ``labels`` (0..C-1), each class is split in the same proportions: class c puts
    round(n_c * val_fraction) rows into validation and round(n_c * test_fraction) into test, so a
    class with a single row stays in training.
    """
    rng = np.random.default_rng(seed)
    order = rng.permutation(num_rows)
    if labels is None:
        labels = np.zeros(num_rows, dtype=np.int64)

    # Group the shuffled rows by class, keeping the random order within a class.
    order = order[np.argsort(labels[order], kind="stable")]
    class_sizes = np.bincount(labels[order])
    class_starts = np.cumsum(class_sizes) - class_sizes
    ordered_labels = labels[order]
    rank_in_class = np.arange(num_rows) - class_starts[ordered_labels]

    val_sizes = np.round(class_sizes * val_fraction).astype(np.int64)
    test_sizes = np.round(class_sizes * test_fraction).astype(np.int64)
    is_val = rank_in_class < val_sizes[ordered_labels]
    is_test = ~is_val & (rank_in_class < (val_sizes + test_sizes)[ordered_labels])
    is_train = ~is_val & ~is_test
    return np.sort(order[is_train]), np.sort(order[is_val]), np.sort(order[is_test])


def standardisation_stats(
    features: np.ndarray, rows: np.ndarray, chunk_rows: int = 1 << 18
) -> tuple[np.ndarray, np.ndarray]:
    """Return per-column mean and population standard deviation of ``features[rows]`` in float64.

    Works in chunks, merged with Chan's parallel variance formula, so that memory-mapped features
    are never loaded whole. A constant column gets a standard deviation of 1, so standardising
    leaves it at zero instead of dividing by zero.
    """
    count = 0
    mean = np.zeros(features.shape[1])
    squared_deviations = np.zeros(features.shape[1])
    for start in range(0, rows.size, chunk_rows):
        chunk = np.asarray(features[rows[start : start + chunk_rows]], dtype=np.float64)
        chunk_mean = chunk.mean(axis=0)
        chunk_squared_deviations = np.square(chunk - chunk_mean).sum(axis=0)
        delta = chunk_mean - mean
        merged = count + chunk.shape[0]
        mean = mean + delta * chunk.shape[0] / merged
        squared_deviations += chunk_squared_deviations + np.square(delta) * count * chunk.shape[0] / merged
        count = merged

    std = np.sqrt(squared_deviations / count)
    std[std <= 1e-12 * np.maximum(1.0, np.abs(mean))] = 1.0
    return mean, std
