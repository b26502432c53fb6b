"""Batches drawn with chosen group shares, repeating small groups and subsampling large ones."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from lightning.pytorch.utilities import rank_zero_warn
from typing_extensions import override

from lightning_app.errors import ConfigError
from lightning_app.samplers.base import EpochBatchSampler, mix_seed
from lightning_app.samplers.cycling import GroupStreams
from lightning_app.samplers.grouping import GroupCodes, encode_groups
from lightning_app.samplers.quota import apportion, member_positions_chunked, plan_quotas

_SHARE_TOLERANCE = 1e-6


def long_tail_shares(num_groups: int, ratio: float) -> list[float]:
    """Return shares proportional to ``ratio ** (c / (C - 1))`` for group codes ``c = 0 .. C - 1``.

    Group code 0 (the smallest group key) gets the largest share and the last code ``ratio`` times
    as much, the long-tailed profile of Cui et al. (2019), "Class-Balanced Loss Based on Effective
    Number of Samples".
    """
    if num_groups == 1:
        return [1.0]
    weights = [ratio ** (code / (num_groups - 1)) for code in range(num_groups)]
    total = sum(weights)
    return [weight / total for weight in weights]


def check_proportions(proportions: Mapping[int, float], groups: GroupCodes) -> list[float]:
    """Return per-code shares from a mapping of group key to share, after checking it.

    Groups missing from the mapping get share 0 and never appear in a batch.

    Raises:
        ConfigError: a key names no group, a share is negative, or the shares do not sum to 1.
    """
    known = {int(value): code for code, value in enumerate(groups.values.tolist())}
    shares = [0.0] * groups.num_groups
    for key, share in proportions.items():
        if int(key) not in known:
            raise ConfigError(
                f"data.proportions names group {key!r}, which is not in the training data (groups: {sorted(known)})"
            )
        if not share >= 0:
            raise ConfigError(f"data.proportions gives group {key!r} share {share}; expected >= 0")
        shares[known[int(key)]] = float(share)
    total = sum(shares)
    if abs(total - 1.0) > _SHARE_TOLERANCE:
        raise ConfigError(f"data.proportions sum to {total:.6g}; make the shares sum to 1")
    return shares


class ImbalancedBatchSampler(EpochBatchSampler):
    """Batches that hold each group in a chosen share, cycling through each group's samples.

    Group ``g`` receives ``T_g`` draws per epoch (the largest-remainder split of ``num_batches * B`` by
    the shares) and appears ``floor(T_g / K)`` or ``ceil(T_g / K)`` times in every batch, which is the
    floor or the ceiling of ``B * share_g``. Its draws walk through a fresh random permutation of its
    samples, so no sample repeats before its group is used up, also across epochs. A small group is
    thus repeated and a large one subsampled. Every batch is full, and under DDP each rank's share
    keeps the bound at batch size ``B / W``.

    Args:
        groups: (N,) integer group key of each sample.
        proportions: mapping of group key to share; the shares must sum to 1.
        long_tail_ratio: instead of ``proportions``, shares falling geometrically from the smallest
            group key to the largest, the last one ``long_tail_ratio`` times the first.
        num_batches: batches per epoch; ``ceil(N / batch_size)`` when None.
        **kwargs: batch size, seed and process options of ``EpochBatchSampler``.

    A group with fewer samples than its per-batch count repeats samples within a batch. The sampler
    keeps the requested count and warns once, naming the largest batch size that avoids it. Where a
    group's permutation ends inside a batch, that batch may also hold one sample twice.

    Raises:
        ConfigError: invalid shares.
    """

    def __init__(
        self,
        sampler: object | None = None,
        *,
        groups: torch.Tensor | GroupCodes,
        proportions: Mapping[int, float] | None = None,
        long_tail_ratio: float | None = None,
        num_batches: int | None = None,
        **kwargs,
    ) -> None:
        self.groups = groups if isinstance(groups, GroupCodes) else encode_groups(groups)
        self._shares = self._resolve_shares(proportions, long_tail_ratio)
        super().__init__(sampler, num_samples=self.groups.num_samples, **kwargs)
        if num_batches is not None and num_batches < 1:
            raise ConfigError(f"data.num_batches is {num_batches}; expected a positive integer")
        self.num_batches = num_batches or math.ceil(self.num_samples / self.batch_size)
        tie_order = torch.randperm(self.groups.num_groups, generator=torch.Generator().manual_seed(self.seed))
        self.totals = apportion(self.num_batches * self.batch_size, self._shares, tie_order)
        self.plan = plan_quotas(self.totals, self.num_batches, self.batch_size)
        self._warn_small_groups()
        self.streams = GroupStreams(self.groups, mix_seed(self.seed, 1))
        group = torch.repeat_interleave(torch.arange(self.groups.num_groups), self.totals)
        member = torch.arange(group.numel()) - (torch.cumsum(self.totals, 0) - self.totals)[group]
        self._positions = member_positions_chunked(self.plan, group, member, rotation=0)

    def _resolve_shares(self, proportions: Mapping[int, float] | None, long_tail_ratio: float | None) -> list[float]:
        if (proportions is None) == (long_tail_ratio is None):
            raise ConfigError("the imbalanced sampler needs exactly one of data.proportions and data.long_tail_ratio")
        if proportions is not None:
            return check_proportions(proportions, self.groups)
        if not 0 < long_tail_ratio <= 1:
            raise ConfigError(f"data.long_tail_ratio is {long_tail_ratio}; expected 0 < ratio <= 1")
        return long_tail_shares(self.groups.num_groups, long_tail_ratio)

    def _warn_small_groups(self) -> None:
        max_per_batch = -(-self.totals // self.num_batches)
        too_small = (max_per_batch > self.groups.counts).nonzero().flatten()
        if not too_small.numel():
            return
        code = int(too_small[0])
        size, per_batch = int(self.groups.counts[code]), int(max_per_batch[code])
        others = f" ({too_small.numel() - 1} more groups too)" if too_small.numel() > 1 else ""
        rank_zero_warn(
            f"group {int(self.groups.values[code])} has {size} training samples but a batch of {self.batch_size} "
            f"takes up to {per_batch} of them, so its samples repeat within a batch{others}; "
            f"data.batch_size {self.batch_size * size // per_batch} or less avoids that"
        )

    @property
    def epoch_length(self) -> int:
        return self.num_batches * self.batch_size

    @override
    def _build_epoch(self, epoch: int, generator: torch.Generator) -> torch.Tensor:
        # The streams carry their own seed, so the generator is unused. The count of each group in each
        # batch is fixed, and the epoch selects which samples fill it.
        drawn = self.streams.read(epoch * self.totals, self.totals)
        return torch.empty_like(drawn).index_copy_(0, self._positions, drawn)
