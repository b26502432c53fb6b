"""Seeded synthetic datasets that reproduce the classic batch-size experiments."""

from __future__ import annotations

import numpy as np

from lightning_app.data.sources import DataSource
from lightning_app.data.table import Table
from lightning_app.errors import ConfigError


def _check_positive(value: int, option: str) -> None:
    if value < 1:
        raise ConfigError(f"{option} is {value}, expected a positive integer")


def _feature_names(count: int) -> list[str]:
    return [f"x{column}" for column in range(count)]


def _gaussian_groups(
    seed: int, counts: list[int], num_features: int, separation: float
) -> tuple[np.ndarray, np.ndarray]:
    """Return float32 features and int64 group ids: group g is centred at ``separation`` times a random unit vector."""
    rng = np.random.default_rng(seed)
    directions = rng.standard_normal((len(counts), num_features))
    centres = separation * directions / np.linalg.norm(directions, axis=1, keepdims=True)
    groups = np.repeat(np.arange(len(counts)), counts)
    features = centres[groups] + rng.standard_normal((groups.size, num_features))
    return features.astype(np.float32), groups.astype(np.int64)


class NoiseRegression(DataSource):
    """Pure noise: inputs and targets are independent standard normals.

    The best any model can do is predict the mean, so the loss floor is the target variance (about 1).
    """

    def __init__(self, num_samples: int = 1000, num_features: int = 10, seed: int = 0) -> None:
        _check_positive(num_samples, "data.source.init_args.num_samples")
        _check_positive(num_features, "data.source.init_args.num_features")
        self.num_samples = num_samples
        self.num_features = num_features
        self.seed = seed

    def load(self) -> Table:
        rng = np.random.default_rng(self.seed)
        features = rng.standard_normal((self.num_samples, self.num_features), dtype=np.float32)
        target = rng.standard_normal(self.num_samples)
        return Table(features, target, _feature_names(self.num_features), "NoiseRegression", task_hint="regression")


class LinearTeacher(DataSource):
    """Targets from a random linear model plus Gaussian noise: y = x @ w + b + noise_std * e."""

    def __init__(
        self, num_samples: int = 1000, num_features: int = 10, noise_std: float = 0.1, seed: int = 0
    ) -> None:
        _check_positive(num_samples, "data.source.init_args.num_samples")
        _check_positive(num_features, "data.source.init_args.num_features")
        if noise_std < 0:
            raise ConfigError(f"data.source.init_args.noise_std is {noise_std}, expected a value >= 0")
        self.num_samples = num_samples
        self.num_features = num_features
        self.noise_std = noise_std
        self.seed = seed

    def load(self) -> Table:
        rng = np.random.default_rng(self.seed)
        features = rng.standard_normal((self.num_samples, self.num_features), dtype=np.float32)
        weight = rng.standard_normal(self.num_features)
        bias = rng.standard_normal()
        target = features @ weight + bias + self.noise_std * rng.standard_normal(self.num_samples)
        return Table(features, target, _feature_names(self.num_features), "LinearTeacher", task_hint="regression")


class GaussianClasses(DataSource):
    """Classes drawn from unit-variance Gaussians with given sample counts, for example 900 and 100.

    Class c is centred at ``separation`` times a random unit vector, drawn once from the seed. The
    class label is also the sample's group id.
    """

    def __init__(
        self,
        counts: tuple[int, ...] = (900, 100),
        num_features: int = 10,
        separation: float = 2.0,
        seed: int = 0,
    ) -> None:
        if len(counts) < 2:
            raise ConfigError(f"data.source.init_args.counts is {counts}, expected at least two classes")
        for count in counts:
            _check_positive(count, "each of data.source.init_args.counts")
        _check_positive(num_features, "data.source.init_args.num_features")
        self.counts = list(counts)
        self.num_features = num_features
        self.separation = separation
        self.seed = seed

    def load(self) -> Table:
        features, labels = _gaussian_groups(self.seed, self.counts, self.num_features, self.separation)
        task = "binary" if len(self.counts) == 2 else "multiclass"
        return Table(features, labels, _feature_names(self.num_features), "GaussianClasses", groups=labels, task_hint=task)


class GroupedTargets(DataSource):
    """Regression rows in groups whose members share one target, for example 900 rows with 0 and 100 with 1.

    Group g's features are unit-variance Gaussians around ``separation`` times a random unit vector
    drawn once from the seed, and every row of group g has target ``targets[g]``. The group id is
    stored as the table's groups, so batch samplers can stratify or balance by it.
    """

    def __init__(
        self,
        counts: tuple[int, ...] = (900, 100),
        targets: tuple[float, ...] = (0.0, 1.0),
        num_features: int = 10,
        separation: float = 2.0,
        seed: int = 0,
    ) -> None:
        if len(counts) < 2 or len(targets) != len(counts):
            raise ConfigError(
                f"data.source.init_args.counts {counts} and targets {targets} must list the same number "
                "(two or more) of groups"
            )
        if min(counts) < 1 or num_features < 1:
            raise ConfigError(f"data.source.init_args.counts {counts} and num_features {num_features} must be positive")
        self.counts = list(counts)
        self.targets = [float(target) for target in targets]
        self.num_features = num_features
        self.separation = separation
        self.seed = seed

    def load(self) -> Table:
        features, groups = _gaussian_groups(self.seed, self.counts, self.num_features, self.separation)
        target = np.asarray(self.targets)[groups]
        return Table(features, target, _feature_names(self.num_features), "GroupedTargets", groups=groups, task_hint="regression")
