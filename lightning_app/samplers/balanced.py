"""Balanced batches: equal counts of every group in each batch."""

from __future__ import annotations

import torch

from lightning_app.errors import ConfigError
from lightning_app.samplers.grouping import GroupCodes, encode_groups
from lightning_app.samplers.imbalanced import ImbalancedBatchSampler


class BalancedBatchSampler(ImbalancedBatchSampler):
    """Batches with ``floor(B / G)`` or ``ceil(B / G)`` samples of each of the G groups.

    Small groups are repeated and large ones subsampled by cycling through fresh permutations of each
    group (see ``ImbalancedBatchSampler``). An epoch has ``num_batches`` batches, by default
    ``ceil(N / batch_size)``: as many steps as one pass of the random sampler, not one pass over every
    sample.

    Args:
        groups: (N,) integer group key of each sample.
        num_batches: batches per epoch; ``ceil(N / batch_size)`` when None.
        **kwargs: batch size, seed and process options of ``EpochBatchSampler``.

    Raises:
        ConfigError: the batch is smaller than the number of groups. A group with fewer samples than
            its per-batch count only warns (see ``ImbalancedBatchSampler``).
    """

    def __init__(
        self,
        sampler: object | None = None,
        *,
        groups: torch.Tensor | GroupCodes,
        num_batches: int | None = None,
        **kwargs,
    ) -> None:
        codes = groups if isinstance(groups, GroupCodes) else encode_groups(groups)
        batch_size = kwargs.get("batch_size", 0)
        if batch_size < codes.num_groups:
            raise ConfigError(
                f"data.batch_size {batch_size} is smaller than the {codes.num_groups} groups, so a batch cannot "
                f"hold every group; use data.batch_size {codes.num_groups} or more with the balanced sampler"
            )
        equal = {int(value): 1 / codes.num_groups for value in codes.values.tolist()}
        super().__init__(sampler, groups=codes, proportions=equal, num_batches=num_batches, **kwargs)

    def _resolve_shares(self, proportions, long_tail_ratio) -> list[int]:
        # Equal integer weights keep the split exact, whatever the float value of 1 / G.
        return [1] * self.groups.num_groups
