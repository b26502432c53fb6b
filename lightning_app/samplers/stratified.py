"""Stratified batches: each batch contains every group in its share of the dataset, each sample once per epoch."""

from __future__ import annotations

import torch
from typing_extensions import override

from lightning_app.samplers.base import EpochBatchSampler, mix_seed
from lightning_app.samplers.grouping import GroupCodes, encode_groups
from lightning_app.samplers.quota import member_positions_chunked, plan_quotas


class GroupShuffler:
    """Order all sample indices by group code, in a fresh random order inside each group.

    One stable sort of int64 keys ``code << 32 | random 32 bits`` does it. Equal keys keep index order,
    which makes the result the same on every process however the sort is parallelised. Such ties are
    rare (about ``n_g ** 2 / 2 ** 33`` pairs in a group of ``n_g`` samples) and leave a tiny bias.
    """

    RANDOM_BITS = 32

    def __init__(self, codes: torch.Tensor) -> None:
        self._code_bits = codes << self.RANDOM_BITS

    def shuffle(self, generator: torch.Generator) -> torch.Tensor:
        """Return the (N,) sample indices, grouped by code and randomly ordered within each group."""
        keys = torch.randint(0, 1 << self.RANDOM_BITS, self._code_bits.shape, generator=generator)
        keys.bitwise_or_(self._code_bits)
        return torch.sort(keys, stable=True).indices


class GroupPermuter:
    """Permute the samples of each group with one ``torch.randperm`` per group.

    With few groups this is about as fast as one ``randperm`` of N and needs no sort: the loop runs
    over groups, never over samples. ``StratifiedBatchSampler`` uses the sort of ``GroupShuffler``
    instead when there are more than ``MAX_GROUPS`` groups, where the per-call overhead would add up.
    """

    MAX_GROUPS = 4096

    def __init__(self, codes: torch.Tensor, counts: torch.Tensor) -> None:
        self.by_group = torch.sort(codes, stable=True).indices
        self.bounds = torch.cumsum(counts, 0).tolist()
        # Reused every epoch: writing into fresh memory costs a page fault per 4 KiB page.
        self._permutation = torch.empty_like(self.by_group)
        self._shuffled = torch.empty_like(self.by_group)

    def scatter(self, generator: torch.Generator, positions: torch.Tensor) -> torch.Tensor:
        """Return the epoch order: group-sorted sample ``i`` goes to ``positions[i]`` after each group is permuted."""
        # Each group's gather stays inside its own slice, which is cache-friendly; the one scatter over
        # all N indices is the only pass with random access.
        start = 0
        for stop in self.bounds:
            permutation = torch.randperm(stop - start, generator=generator, out=self._permutation[start:stop])
            torch.index_select(self.by_group[start:stop], 0, permutation, out=self._shuffled[start:stop])
            start = stop
        return torch.empty_like(self.by_group).index_copy_(0, positions, self._shuffled)


class StratifiedBatchSampler(EpochBatchSampler):
    """Batches that hold each group in its dataset proportion; every sample is used once per epoch.

    With ``p_g = n_g / N``, group ``g`` appears ``floor(B * p_g)`` or ``ceil(B * p_g)`` times in each full
    batch of ``B`` and the counts sum to ``B``. The last, smaller batch of ``r = N mod B`` samples obeys
    the same bound with ``r`` in place of ``B``. A group smaller than the number of batches appears in
    only some batches (count 0 or 1), as the bound allows. Under DDP each rank's share of a batch obeys
    the bound at batch size ``B / W``.

    The count of each group in each batch is fixed when the sampler is built; each epoch draws which
    samples fill those counts. An epoch costs one ``randperm`` per group and one scatter of N indices
    (with more than 4096 groups, one stable sort of N random int64 keys replaces the ``randperm`` calls).

    Args:
        groups: (N,) integer group key of each sample (class label, quantile bin or group column).
        **kwargs: batch size, seed, drop_last and process options of ``EpochBatchSampler``.
    """

    def __init__(self, sampler: object | None = None, *, groups: torch.Tensor | GroupCodes, **kwargs) -> None:
        self.groups = groups if isinstance(groups, GroupCodes) else encode_groups(groups)
        super().__init__(sampler, num_samples=self.groups.num_samples, **kwargs)
        if self.groups.num_groups <= GroupPermuter.MAX_GROUPS:
            self._permuter: GroupPermuter | None = GroupPermuter(self.groups.codes, self.groups.counts)
            self._shuffler: GroupShuffler | None = None
        else:
            self._permuter, self._shuffler = None, GroupShuffler(self.groups.codes)
        self._positions = self._plan_positions()

    def _plan_positions(self) -> torch.Tensor:
        """Return the epoch position of the ``i``-th sample of the group-sorted order."""
        counts = self.groups.counts
        num_samples, size = self.num_samples, self.batch_size
        full_batches = num_samples // size
        tail = num_samples - full_batches * size

        # Counts for the last, smaller batch: floor(tail * p_g), plus one for randomly chosen groups with
        # a fractional share until they sum to `tail`. The rest splits exactly over the full batches.
        tail_counts = (tail * counts) // num_samples
        missing = tail - int(tail_counts.sum())
        if missing:
            fractional = ((tail * counts) % num_samples > 0).nonzero().flatten()
            generator = torch.Generator().manual_seed(mix_seed(self.seed, 2))
            chosen = fractional[torch.randperm(fractional.numel(), generator=generator)[:missing]]
            tail_counts[chosen] += 1
        full_counts = counts - tail_counts

        group = torch.repeat_interleave(torch.arange(self.groups.num_groups), counts)
        member = torch.arange(num_samples) - (torch.cumsum(counts, 0) - counts)[group]
        if not tail:
            return member_positions_chunked(plan_quotas(counts, full_batches, size), group, member, rotation=0)
        positions = torch.empty(num_samples, dtype=torch.int64)
        in_full = member < full_counts[group]
        if full_batches:
            plan = plan_quotas(full_counts, full_batches, size)
            positions[in_full] = member_positions_chunked(plan, group[in_full], member[in_full], rotation=0)
        in_tail = ~in_full
        tail_group = group[in_tail]
        tail_start = torch.cumsum(tail_counts, 0) - tail_counts
        positions[in_tail] = full_batches * size + tail_start[tail_group] + member[in_tail] - full_counts[tail_group]
        return positions

    @override
    def _build_epoch(self, epoch: int, generator: torch.Generator) -> torch.Tensor:
        if self._permuter is not None:
            return self._permuter.scatter(generator, self._positions)
        order = self._shuffler.shuffle(generator)
        return torch.empty_like(order).index_copy_(0, self._positions, order)
