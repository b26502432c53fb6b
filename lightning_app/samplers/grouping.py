"""Group keys for batch samplers: class labels, quantile bins of a regression target, or a group column."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lightning_app.errors import ConfigError


@dataclass(frozen=True)
class GroupCodes:
    """Group membership of every sample, encoded as dense codes.

    Attributes:
        codes: (N,) int64 group code of each sample, in ``0 .. num_groups - 1``.
        values: (G,) the original group key of each code, sorted ascending.
        counts: (G,) int64 number of samples per code.
    """

    codes: torch.Tensor
    values: torch.Tensor
    counts: torch.Tensor

    @property
    def num_groups(self) -> int:
        return int(self.counts.numel())

    @property
    def num_samples(self) -> int:
        return int(self.codes.numel())


def encode_groups(labels: torch.Tensor | list[int], *, origin: str = "groups") -> GroupCodes:
    """Encode arbitrary integer group keys (for example class labels 3, 7, 42) as codes ``0 .. G - 1``.

    Args:
        labels: (N,) integer group key of each sample.
        origin: the option or column the keys came from, quoted in error messages.

    Raises:
        ConfigError: the keys are empty, not one-dimensional or not integers.
    """
    keys = torch.as_tensor(labels)
    if keys.ndim != 1 or keys.numel() == 0:
        raise ConfigError(f"{origin} has shape {tuple(keys.shape)}; expected a non-empty vector of group keys")
    if keys.is_floating_point() or keys.is_complex():
        raise ConfigError(
            f"{origin} has invalid dtype {keys.dtype}; group keys must be integers (use quantile bins for a "
            "continuous target)"
        )
    values, codes, counts = torch.unique(keys.to(torch.int64), sorted=True, return_inverse=True, return_counts=True)
    return GroupCodes(codes=codes, values=values, counts=counts)


def quantile_bins(target: torch.Tensor, num_bins: int, *, origin: str = "target") -> GroupCodes:
    """Group a continuous target into ``num_bins`` bins at its empirical quantiles.

    Bin ``b`` contains the targets between the ``b / num_bins`` and ``(b + 1) / num_bins`` quantiles, so bins
    have near-equal counts unless many targets tie.

    Raises:
        ConfigError: ``num_bins`` is below 1, or ties make a bin empty (the message gives the count that fits).
    """
    values = torch.as_tensor(target).to(torch.float64).flatten()
    if num_bins < 1:
        raise ConfigError(f"the number of target bins is {num_bins}; expected 1 or more")
    if values.numel() < num_bins:
        raise ConfigError(f"{origin} has {values.numel()} values, fewer than {num_bins} bins; lower the bin count")
    # Edges by sorting rather than torch.quantile, which rejects inputs above 2**24 values.
    ordered = torch.sort(values).values
    inner_edges = ordered[(torch.arange(1, num_bins) * values.numel()) // num_bins]
    codes = torch.bucketize(values, inner_edges, right=True)
    counts = torch.bincount(codes, minlength=num_bins)
    if bool((counts == 0).any()):
        distinct = int(torch.unique(values).numel())
        raise ConfigError(
            f"{origin} split into {num_bins} quantile bins leaves {int((counts == 0).sum())} bin(s) empty because "
            f"of tied values ({distinct} distinct targets); lower the bin count or group by a column instead"
        )
    return GroupCodes(codes=codes, values=torch.arange(num_bins), counts=counts)
