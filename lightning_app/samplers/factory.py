"""Build a training batch sampler from the datamodule's options."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import torch

from lightning_app.errors import ConfigError
from lightning_app.samplers.balanced import BalancedBatchSampler
from lightning_app.samplers.base import EpochBatchSampler
from lightning_app.samplers.grouping import GroupCodes, encode_groups, quantile_bins
from lightning_app.samplers.imbalanced import ImbalancedBatchSampler
from lightning_app.samplers.simple import RandomBatchSampler, SequentialBatchSampler
from lightning_app.samplers.stratified import StratifiedBatchSampler

SamplerName = Literal["random", "sequential", "stratified", "balanced", "imbalanced"]
GroupBy = Literal["auto", "target", "groups"]

GROUPED_SAMPLERS = ("stratified", "balanced", "imbalanced")


def resolve_group_codes(
    group_by: GroupBy, *, targets: torch.Tensor, groups: torch.Tensor | None, is_classification: bool, num_bins: int
) -> GroupCodes:
    """Return the group of each training sample for the chosen key.

    ``"target"`` groups by class label for classification and by ``num_bins`` quantile bins of the
    target for regression. ``"groups"`` uses the data's group column. ``"auto"`` uses the group column
    when the data has one and the target otherwise.

    Raises:
        ConfigError: ``"groups"`` is asked for but the data has no group column, or the bins come out empty.
    """
    if group_by == "groups" or (group_by == "auto" and groups is not None):
        if groups is None:
            raise ConfigError(
                "data.group_by is 'groups' but the data source has no group column; set "
                "data.source.init_args.group to a column name, or use data.group_by target"
            )
        return encode_groups(groups, origin="the group column")
    if group_by not in ("auto", "target"):
        raise ConfigError(f"data.group_by is {group_by!r}; expected auto, target or groups")
    if is_classification:
        return encode_groups(targets, origin="the class labels")
    return quantile_bins(targets, num_bins, origin="the regression target (data.num_bins)")


def build_batch_sampler(
    name: SamplerName,
    *,
    num_samples: int,
    groups: GroupCodes | None,
    batch_size: int,
    seed: int,
    drop_last: bool = False,
    proportions: Mapping[int, float] | None = None,
    long_tail_ratio: float | None = None,
    num_batches: int | None = None,
    num_replicas: int | None = None,
    rank: int | None = None,
) -> EpochBatchSampler:
    """Instantiate the batch sampler called ``name``.

    Raises:
        ConfigError: an unknown name, or options that the chosen sampler does not take.
    """
    common = {"batch_size": batch_size, "seed": seed, "num_replicas": num_replicas, "rank": rank}
    if name != "imbalanced" and (proportions is not None or long_tail_ratio is not None):
        raise ConfigError(
            f"data.proportions and data.long_tail_ratio apply to the imbalanced sampler, not to data.sampler {name!r}"
        )
    if name in ("random", "sequential", "stratified") and num_batches is not None:
        raise ConfigError(
            f"data.num_batches sets the epoch length of the balanced and imbalanced samplers; data.sampler "
            f"{name!r} always uses every sample once per epoch, so leave it unset"
        )
    if name in ("balanced", "imbalanced") and drop_last:
        raise ConfigError(f"data.drop_last does not apply to data.sampler {name!r}, whose batches are all full")
    if name == "random":
        return RandomBatchSampler(num_samples=num_samples, drop_last=drop_last, **common)
    if name == "sequential":
        return SequentialBatchSampler(num_samples=num_samples, drop_last=drop_last, **common)
    if name not in GROUPED_SAMPLERS:
        raise ConfigError(f"data.sampler is {name!r}; expected random, sequential, stratified, balanced or imbalanced")
    assert groups is not None
    if name == "stratified":
        return StratifiedBatchSampler(groups=groups, drop_last=drop_last, **common)
    if name == "balanced":
        return BalancedBatchSampler(groups=groups, num_batches=num_batches, **common)
    return ImbalancedBatchSampler(
        groups=groups, proportions=proportions, long_tail_ratio=long_tail_ratio, num_batches=num_batches, **common
    )
