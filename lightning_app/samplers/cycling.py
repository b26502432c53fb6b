"""Endless per-group streams of fresh permutations, for samplers that repeat or skip samples."""

from __future__ import annotations

import torch

from lightning_app.samplers.grouping import GroupCodes

# splitmix64 constants as signed int64 (torch integer arithmetic wraps modulo 2**64).
_GOLDEN = 0x9E3779B97F4A7C15 - (1 << 64)
_MIX1 = 0xBF58476D1CE4E5B9 - (1 << 64)
_MIX2 = 0x94D049BB133111EB - (1 << 64)


def _shift_right(values: torch.Tensor, bits: int) -> torch.Tensor:
    """Logical right shift of int64 values (torch's ``>>`` copies the sign bit)."""
    return (values >> bits) & ((1 << (64 - bits)) - 1)


def hash64(values: torch.Tensor) -> torch.Tensor:
    """Hash int64 values elementwise with the splitmix64 finaliser (Steele et al., 2014)."""
    values = values + _GOLDEN
    values = (values ^ _shift_right(values, 30)) * _MIX1
    values = (values ^ _shift_right(values, 27)) * _MIX2
    return values ^ _shift_right(values, 31)


class GroupStreams:
    """For each group, the endless concatenation of independent random permutations of its samples.

    Cycle ``c`` of group ``g`` is ordered by a hash of ``(seed, g, c, member)``, so any stretch of a
    stream is computed without the stretches before it: epoch ``e`` reads positions
    ``[e * T_g, (e + 1) * T_g)`` of stream ``g``. Within a stream no sample repeats before every sample
    of its group has appeared, across epoch boundaries too.

    Args:
        groups: the group codes of the dataset.
        seed: the stream seed (not the epoch: a stream runs on across epochs).
    """

    def __init__(self, groups: GroupCodes, seed: int) -> None:
        self.groups = groups
        self.seed = seed
        self.by_group = torch.sort(groups.codes, stable=True).indices
        self.group_start = torch.cumsum(groups.counts, 0) - groups.counts

    def read(self, first: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
        """Return stream positions ``[first[g], first[g] + length[g])`` of every group, group 0's first.

        Args:
            first: (G,) int64 first stream position of each group.
            length: (G,) int64 number of positions to read from each group.

        Returns:
            (sum(length),) int64 sample indices.
        """
        sizes = self.groups.counts
        num_groups = sizes.numel()
        reading = length > 0
        first_cycle = first // sizes
        last_cycle = torch.where(reading, (first + length - 1) // sizes, first_cycle - 1)
        cycles = last_cycle - first_cycle + 1

        # One segment per (group, cycle) touched, each holding every sample of the group once.
        segment_group = torch.repeat_interleave(torch.arange(num_groups), cycles)
        first_segment = torch.cumsum(cycles, 0) - cycles
        segment_cycle = first_cycle[segment_group] + torch.arange(segment_group.numel()) - first_segment[segment_group]
        segment_size = sizes[segment_group]
        segment_offset = torch.cumsum(segment_size, 0) - segment_size
        segment_hash = hash64(hash64(torch.full_like(segment_group, self.seed) + segment_group) + segment_cycle)

        element_segment = torch.repeat_interleave(torch.arange(segment_group.numel()), segment_size)
        element_member = torch.arange(element_segment.numel()) - segment_offset[element_segment]
        random_bits = hash64(segment_hash[element_segment] + element_member) & 0xFFFFFFFF
        # Stable sort: equal keys (a 32-bit hash tie inside one segment) keep member order on every process.
        shuffled = torch.sort((element_segment << 32) | random_bits, stable=True).indices
        shuffled_member = element_member[shuffled]

        # Stream position p of group g is member number p mod n_g of segment (g, p // n_g).
        read_group = torch.repeat_interleave(torch.arange(num_groups), length)
        read_start = torch.cumsum(length, 0) - length
        position = first[read_group] + torch.arange(read_group.numel()) - read_start[read_group]
        group_size = sizes[read_group]
        segment = first_segment[read_group] + position // group_size - first_cycle[read_group]
        member = shuffled_member[segment_offset[segment] + position % group_size]
        return self.by_group[self.group_start[read_group] + member]
