"""Process rank and world size for the batch samplers, and the split of a global batch across ranks."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler

from lightning_app.errors import ConfigError


def resolve_replicas(num_replicas: int | None, rank: int | None, sampler: object | None) -> tuple[int, int]:
    """Return ``(world_size, rank)`` for a batch sampler.

    The first source that is set wins: explicit arguments, a ``DistributedSampler`` that Lightning
    injected (with ``Trainer(use_distributed_sampler=True)``, the default), then the initialised default
    process group. Without any of them the sampler runs as a single process.

    Raises:
        ConfigError: the world size is below 1 or the rank is out of range.
    """
    if num_replicas is None and isinstance(sampler, DistributedSampler):
        num_replicas, rank = sampler.num_replicas, sampler.rank
    if num_replicas is None:
        if dist.is_available() and dist.is_initialized():
            num_replicas, rank = dist.get_world_size(), dist.get_rank()
        else:
            num_replicas = 1
    rank = 0 if rank is None else rank
    if num_replicas < 1 or not 0 <= rank < num_replicas:
        raise ConfigError(f"sampler rank {rank} of world size {num_replicas} is invalid; expected 0 <= rank < size")
    return num_replicas, rank


def check_divisible(batch_size: int, num_replicas: int) -> None:
    """Raise ``ConfigError`` unless the global batch splits evenly over the processes."""
    if batch_size % num_replicas:
        raise ConfigError(
            f"data.batch_size {batch_size} is the global batch and does not divide by the {num_replicas} "
            f"processes; use a multiple of {num_replicas}"
        )


def rank_share(batch: torch.Tensor, num_replicas: int, rank: int) -> torch.Tensor:
    """Return the strided share ``batch[rank::num_replicas]`` of one global batch (a copy)."""
    return batch[rank::num_replicas].clone()
