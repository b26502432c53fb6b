"""The base class of the batch samplers: epochs, process ranks and a resumable position."""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import BatchSampler

from lightning_app.errors import ConfigError
from lightning_app.samplers.distributed import check_divisible, rank_share, resolve_replicas

log = logging.getLogger(__name__)

_MASK64 = (1 << 64) - 1


def mix_seed(*values: int) -> int:
    """Hash integers into one 63-bit seed with the splitmix64 finaliser (Steele et al., 2014)."""
    state = 0
    for value in values:
        state = (state + (value & _MASK64) + 0x9E3779B97F4A7C15) & _MASK64
        state = ((state ^ (state >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        state = ((state ^ (state >> 27)) * 0x94D049BB133111EB) & _MASK64
        state ^= state >> 31
    return state >> 1


class _EpochForwarder:
    """Target of the ``set_epoch`` call that Lightning makes on ``dataloader.batch_sampler.sampler``.

    Lightning 2.6 calls ``set_epoch`` on ``dataloader.sampler`` and on ``dataloader.batch_sampler.sampler``,
    never on the batch sampler itself, so the batch sampler exposes this object as its ``sampler``.
    """

    def __init__(self, owner: EpochBatchSampler) -> None:
        self._owner = owner

    def set_epoch(self, epoch: int) -> None:
        self._owner.set_epoch(epoch)

    def __len__(self) -> int:
        return self._owner.num_samples


class EpochBatchSampler(BatchSampler):
    """Yield one process's share of each global batch of an epoch, as int64 index tensors.

    Subclasses build the whole epoch as one flat index tensor (``_build_epoch``). This class splits it
    into global batches of ``batch_size``, gives rank ``r`` of ``W`` the strided positions
    ``r, r + W, ...`` of every global batch, and keeps the epoch and the position inside it.

    ``batch_size`` is the global batch: each of ``W`` processes receives ``batch_size / W`` indices per
    step, and every process yields the same number of batches. The same seed and epoch give the same
    batches on every process and in every run.

    Args:
        sampler: ignored, except that a ``DistributedSampler`` supplies the world size and rank. Lightning
            injects one here when ``Trainer(use_distributed_sampler=True)`` runs on several processes.
        num_samples: N, the size of the dataset.
        batch_size: the global batch size.
        seed: seeds every epoch, together with the epoch number.
        drop_last: drop the last, smaller batch when N does not divide by ``batch_size``.
        num_replicas: world size; read from ``sampler`` or ``torch.distributed`` when None.
        rank: this process's rank; read like ``num_replicas`` when None.
    """

    def __init__(
        self,
        sampler: object | None = None,
        *,
        num_samples: int,
        batch_size: int,
        seed: int = 0,
        drop_last: bool = False,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"data.batch_size is {batch_size}, expected a positive integer")
        if num_samples < 1:
            raise ConfigError("the training set is empty; a batch sampler needs at least one sample")
        self.num_replicas, self.rank = resolve_replicas(num_replicas, rank, sampler)
        check_divisible(batch_size, self.num_replicas)
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.seed = seed
        self.drop_last = drop_last
        self.sampler = _EpochForwarder(self)
        self.epoch = 0
        self._resume_epoch = -1
        self._resume_batches = 0
        self._iter_epoch = 0
        self._batches_yielded = 0
        self._cached: tuple[int, torch.Tensor] | None = None

    @property
    def epoch_length(self) -> int:
        """Number of indices one epoch draws over all processes; ``num_samples`` unless a subclass differs."""
        return self.num_samples

    @property
    def full_batches(self) -> int:
        return self.epoch_length // self.batch_size

    @property
    def tail_size(self) -> int:
        """Size of the last, smaller global batch that this sampler yields; 0 when there is none."""
        tail = self.epoch_length - self.full_batches * self.batch_size
        # Under DDP every process needs at least one index of the tail batch, or it would have no batch.
        if self.drop_last or tail < self.num_replicas:
            return 0
        return tail

    def __len__(self) -> int:
        return self.full_batches + (1 if self.tail_size else 0)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose batches the next iteration yields."""
        self.epoch = epoch

    def epoch_indices(self, epoch: int) -> torch.Tensor:
        """Return the flat (epoch_length,) int64 global order of ``epoch``: batch ``k`` is ``[k * B, (k + 1) * B)``."""
        if self._cached is None or self._cached[0] != epoch:
            self._cached = (epoch, self._build_epoch(epoch, torch.Generator().manual_seed(mix_seed(self.seed, epoch))))
        return self._cached[1]

    @abstractmethod
    def _build_epoch(self, epoch: int, generator: torch.Generator) -> torch.Tensor:
        """Build the flat global order of one epoch, using ``generator`` (seeded from seed and epoch) for randomness."""

    def __iter__(self) -> Iterator[torch.Tensor]:
        # A generator: this body runs at the first next(), so a set_epoch() call made after iter() and
        # before the first batch still counts. Lightning creates the first epoch's iterator before it
        # calls set_epoch(0).
        epoch = self.epoch
        first = self._resume_batches if self._resume_epoch == epoch else 0
        self._resume_epoch, self._resume_batches = -1, 0
        order = self.epoch_indices(epoch)
        self._iter_epoch = epoch
        self._batches_yielded = first
        size = self.batch_size
        for batch in range(first, len(self)):
            global_batch = order[batch * size : (batch + 1) * size]
            self._batches_yielded = batch + 1
            yield rank_share(global_batch, self.num_replicas, self.rank)

    def state_dict(self) -> dict[str, Any]:
        """Return the epoch and the number of batches already yielded in it, for checkpoints."""
        return {
            "epoch": self._iter_epoch,
            "batches_yielded": self._batches_yielded,
            "num_samples": self.num_samples,
            "batch_size": self.batch_size,
            "seed": self.seed,
            "sampler": type(self).__name__,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from ``state``: the next iteration continues the saved epoch after its yielded batches.

        A saved epoch that had yielded all its batches resumes at the start of the following epoch.

        Raises:
            ConfigError: the state belongs to another sampler, dataset size, batch size or seed.
        """
        for key, current in (
            ("sampler", type(self).__name__),
            ("num_samples", self.num_samples),
            ("batch_size", self.batch_size),
            ("seed", self.seed),
        ):
            if state.get(key) != current:
                raise ConfigError(
                    f"the checkpoint's batch sampler has {key}={state.get(key)!r} but this run has {current!r}; "
                    "resume with the data settings the checkpoint was trained with"
                )
        epoch, yielded = int(state["epoch"]), int(state["batches_yielded"])
        if yielded >= len(self):
            epoch, yielded = epoch + 1, 0
        self.epoch = epoch
        self._iter_epoch = epoch
        self._batches_yielded = yielded
        self._resume_epoch, self._resume_batches = epoch, yielded
