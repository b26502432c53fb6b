"""Batch samplers that decide how training batches are composed: random, sequential, stratified,
balanced and imbalanced, all deterministic per seed and epoch, DDP-aware and resumable."""

from lightning_app.samplers.balanced import BalancedBatchSampler
from lightning_app.samplers.base import EpochBatchSampler
from lightning_app.samplers.factory import GroupBy, SamplerName, build_batch_sampler, resolve_group_codes
from lightning_app.samplers.grouping import GroupCodes, encode_groups, quantile_bins
from lightning_app.samplers.imbalanced import ImbalancedBatchSampler, long_tail_shares
from lightning_app.samplers.simple import RandomBatchSampler, SequentialBatchSampler
from lightning_app.samplers.stratified import StratifiedBatchSampler

__all__ = [
    "BalancedBatchSampler",
    "EpochBatchSampler",
    "GroupBy",
    "GroupCodes",
    "ImbalancedBatchSampler",
    "RandomBatchSampler",
    "SamplerName",
    "SequentialBatchSampler",
    "StratifiedBatchSampler",
    "build_batch_sampler",
    "encode_groups",
    "long_tail_shares",
    "quantile_bins",
    "resolve_group_codes",
]
