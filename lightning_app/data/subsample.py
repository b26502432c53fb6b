"""Subsampling of the training split, to build long-tailed training sets from balanced data."""

from __future__ import annotations

import numpy as np

from lightning_app.errors import ConfigError


def long_tail_rows(rows: np.ndarray, labels: np.ndarray, ratio: float, seed: int) -> np.ndarray:
    """Keep ``round(n_max * ratio ** (c / (C - 1)))`` rows (at least one) of class index ``c``.

    This is the long-tailed construction of Cui et al. (2019), "Class-Balanced Loss Based on Effective
    Number of Samples": class 0 keeps ``n_max`` rows and the last class ``ratio * n_max``. Rows are chosen
    at random with ``seed``; a class with fewer rows than its quota keeps all of them.

    Args:
        rows: (M,) row numbers of the training split.
        labels: (M,) class index of each of those rows.
        ratio: f, the share the last class keeps, in (0, 1].
        seed: seeds the choice of rows.

    Returns:
        The kept row numbers, in their original order.

    Raises:
        ConfigError: ``ratio`` is outside (0, 1].
    """
    if not 0 < ratio <= 1:
        raise ConfigError(f"data.train_long_tail is {ratio}; expected a ratio in (0, 1]")
    classes = int(labels.max()) + 1
    largest = int(np.bincount(labels, minlength=classes).max())
    rng = np.random.default_rng(seed)
    keep = np.zeros(rows.size, dtype=bool)
    for label in range(classes):
        members = np.flatnonzero(labels == label)
        exponent = label / (classes - 1) if classes > 1 else 0.0
        quota = max(1, round(largest * ratio**exponent))
        keep[rng.permutation(members)[:quota]] = True
    return rows[keep]
