"""The LightningDataModule that serves any data source as train, validation and test tensors."""

from __future__ import annotations

from functools import cached_property

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader
from torchdata.stateful_dataloader import StatefulDataLoader
from typing_extensions import override

from lightning_app.data.dataset import MemmapTableDataset, TableDataset, batch_collate
from lightning_app.data.sources import DataSource
from lightning_app.data.split import check_fractions, split_indices, standardisation_stats
from lightning_app.data.subsample import long_tail_rows
from lightning_app.data.task import ResolvedTarget, TaskName, resolve_target
from lightning_app.errors import ConfigError
from lightning_app.samplers import (
    EpochBatchSampler,
    GroupBy,
    GroupCodes,
    SamplerName,
    build_batch_sampler,
    resolve_group_codes,
)
from lightning_app.samplers.distributed import check_divisible
from lightning_app.samplers.factory import GROUPED_SAMPLERS


class TabularDataModule(LightningDataModule):
    """Split a tabular source into train, validation and test sets and serve them in batches.

    Features (and the target, for regression) are standardised with statistics of the training
    split only. Classification splits are stratified by class.

    Args:
        source: where the rows come from: ``FileSource``, ``NpySource`` or a synthetic generator.
        task: "regression", "binary", "multiclass", or "auto" to infer it from the target.
        batch_size: the global training batch: with W DDP processes each loads ``batch_size / W`` rows
            a step, so the optimisation does not change with the device count. It must divide by W.
        eval_batch_size: validation, test and predict batch size per process; defaults to ``batch_size``.
        val_fraction: share of rows (of each class, for classification) held out for validation.
        test_fraction: share held out for testing; 0 leaves no test set.
        seed: seeds the split and the training batch sampler.
        standardize: standardise features and a regression target with training statistics.
        num_workers: DataLoader worker processes; 0 fetches batches in the training process, which
            is fastest for data that is already in memory.
        sampler: how training batches are composed: "random" (a seeded shuffle), "sequential" (data
            order, no shuffle), "stratified" (each batch contains every group in its dataset share, each
            sample once per epoch), "balanced" (equal counts of every group) or "imbalanced" (chosen
            group shares). Validation and test batches are always sequential.
        group_by: the group key of the grouped samplers: "target" (the class, or ``num_bins`` quantile
            bins of a regression target), "groups" (the source's group column) or "auto" (the group
            column when the source has one, else the target).
        num_bins: quantile bins of a regression target when grouping by target.
        proportions: "imbalanced" only: mapping of group id (class index or group id) to its share of
            every batch; the shares must sum to 1.
        long_tail_ratio: "imbalanced" only, instead of ``proportions``: shares falling geometrically
            from group 0 to the last group, which gets this fraction of group 0's share.
        num_batches: "balanced" and "imbalanced" only: batches per epoch, by default
            ``ceil(training rows / batch_size)``.
        drop_last: "random", "sequential" and "stratified": drop the last, smaller batch.
        train_long_tail: classification only: keep ``round(n_max * f ** (c / (C - 1)))`` training rows
            (at least one) of class index c, where n_max is the largest class count of the training split
            and f this value, to study a long-tailed training set. Validation and test rows stay as split.
    """

    def __init__(
        self,
        source: DataSource,
        task: TaskName = "auto",
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        val_fraction: float = 0.2,
        test_fraction: float = 0.2,
        seed: int = 0,
        standardize: bool = True,
        num_workers: int = 0,
        sampler: SamplerName = "random",
        group_by: GroupBy = "auto",
        num_bins: int = 10,
        proportions: dict[int, float] | None = None,
        long_tail_ratio: float | None = None,
        num_batches: int | None = None,
        drop_last: bool = False,
        train_long_tail: float | None = None,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ConfigError(f"data.batch_size is {batch_size}, expected a positive integer")
        if eval_batch_size is not None and eval_batch_size < 1:
            raise ConfigError(f"data.eval_batch_size is {eval_batch_size}, expected a positive integer or null")
        if num_workers < 0:
            raise ConfigError(f"data.num_workers is {num_workers}, expected 0 or more")
        check_fractions(val_fraction, test_fraction)
        self.source = source
        self.task = task
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.seed = seed
        self.standardize = standardize
        self.num_workers = num_workers
        self.sampler = sampler
        self.group_by = group_by
        self.num_bins = num_bins
        self.proportions = proportions
        self.long_tail_ratio = long_tail_ratio
        self.num_batches = num_batches
        self.drop_last = drop_last
        self.train_long_tail = train_long_tail
        self.train_set: TableDataset
        self.val_set: TableDataset
        self.test_set: TableDataset

    # Values the CLI links into the model. Reading one loads and splits the data, so bad data fails
    # while the CLI instantiates classes, before any training.

    @property
    def num_features(self) -> int:
        return self._prepared["num_features"]

    @property
    def num_outputs(self) -> int:
        """1 for regression, the class count for classification (binary uses two logits)."""
        resolved = self._prepared["resolved"]
        return 1 if resolved.task == "regression" else len(resolved.class_values)

    @property
    def task_name(self) -> str:
        return self._prepared["resolved"].task

    @property
    def target_mean(self) -> float:
        """Mean subtracted from a regression target; the model adds it back to report raw units."""
        return self._prepared["target_mean"]

    @property
    def target_std(self) -> float:
        """Scale a regression target was divided by; the model multiplies it back."""
        return self._prepared["target_std"]

    @property
    def class_counts(self) -> list[int] | None:
        """Training rows per class, or None for regression."""
        return self._prepared["class_counts"]

    @property
    def class_names(self) -> list[str]:
        return self._prepared["resolved"].class_values

    @cached_property
    def _prepared(self) -> dict:
        table = self.source.load()
        resolved: ResolvedTarget = resolve_target(table, self.task)
        is_classification = resolved.task != "regression"
        train_rows, val_rows, test_rows = split_indices(
            len(resolved.values),
            self.val_fraction,
            self.test_fraction,
            self.seed,
            labels=resolved.values if is_classification else None,
        )
        if val_rows.size == 0:
            raise ConfigError(
                f"data.val_fraction {self.val_fraction} leaves no validation rows out of "
                f"{len(resolved.values)}; raise it"
            )
        if self.train_long_tail is not None:
            if not is_classification:
                raise ConfigError("data.train_long_tail applies to classification; remove it for a regression target")
            train_rows = long_tail_rows(train_rows, resolved.values[train_rows], self.train_long_tail, self.seed)

        if self.standardize:
            mean, std = standardisation_stats(table.features, train_rows)
        else:
            mean, std = np.zeros(table.features.shape[1]), np.ones(table.features.shape[1])
        target_mean, target_std = 0.0, 1.0
        if self.standardize and not is_classification:
            target_mean = float(resolved.values[train_rows].mean())
            target_std = float(resolved.values[train_rows].std()) or 1.0

        def build(rows: np.ndarray) -> TableDataset:
            if is_classification:
                targets = torch.from_numpy(resolved.values[rows])
            else:
                targets = torch.from_numpy(((resolved.values[rows] - target_mean) / target_std).astype(np.float32))
            groups = None if table.groups is None else torch.from_numpy(table.groups[rows])
            if isinstance(table.features, np.memmap):
                return MemmapTableDataset(table.features, rows, mean, std, targets, groups)
            features = (np.asarray(table.features[rows], dtype=np.float64) - mean) / std
            return TableDataset(torch.from_numpy(features.astype(np.float32)), targets, groups)

        self.train_set, self.val_set, self.test_set = build(train_rows), build(val_rows), build(test_rows)
        class_counts = None
        if is_classification:
            class_counts = np.bincount(resolved.values[train_rows], minlength=len(resolved.class_values)).tolist()
        rank_zero_info(
            f"Data from {table.origin}: {resolved.task}, {table.features.shape[1]} features, "
            f"{train_rows.size} train / {val_rows.size} validation / {test_rows.size} test rows."
        )
        train_groups = None
        if self.sampler in GROUPED_SAMPLERS:
            train_groups = resolve_group_codes(
                self.group_by,
                targets=self.train_set.targets,
                groups=self.train_set.groups,
                is_classification=is_classification,
                num_bins=self.num_bins,
            )
        # Build a single-process sampler once so that bad sampler options fail before training starts.
        self._build_train_sampler(train_groups, num_replicas=1, rank=0)
        return {
            "train_groups": train_groups,
            "num_features": int(table.features.shape[1]),
            "resolved": resolved,
            "target_mean": target_mean,
            "target_std": target_std,
            "class_counts": class_counts,
        }

    @override
    def setup(self, stage: str) -> None:
        self._prepared  # noqa: B018 (loads and splits the data once)
        if stage == "fit" and self.trainer is not None:
            check_divisible(self.batch_size, self.trainer.world_size)

    def _build_train_sampler(self, groups: GroupCodes | None, num_replicas: int, rank: int) -> EpochBatchSampler:
        return build_batch_sampler(
            self.sampler,
            num_samples=len(self.train_set),
            groups=groups,
            batch_size=self.batch_size,
            seed=self.seed,
            drop_last=self.drop_last,
            proportions=self.proportions,
            long_tail_ratio=self.long_tail_ratio,
            num_batches=self.num_batches,
            num_replicas=num_replicas,
            rank=rank,
        )

    def _train_batch_sampler(self) -> EpochBatchSampler:
        # Built inside train_dataloader(): Lightning records the arguments of batch samplers created
        # there, and with Trainer(use_distributed_sampler=True) under DDP it rebuilds the sampler from
        # them with a DistributedSampler injected, which this sampler ignores in favour of the
        # explicit world size and rank below.
        trainer = self.trainer
        num_replicas, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        return self._build_train_sampler(self._prepared["train_groups"], num_replicas, rank)

    def _eval_loader(self, dataset: TableDataset) -> DataLoader:
        # A plain batch_size, not a BatchSampler: under DDP, Lightning 2.6 rebuilt a loader given as
        # BatchSampler(SequentialSampler) with batches of 1 around its DistributedSampler. Batches
        # still arrive whole through __getitems__.
        return DataLoader(
            dataset,
            batch_size=self.eval_batch_size,
            shuffle=False,
            collate_fn=batch_collate,
            num_workers=self.num_workers,
        )

    @override
    def train_dataloader(self) -> DataLoader:
        """Return a torchdata ``StatefulDataLoader``, so checkpoints store the sampler's position in the epoch."""
        # NOTE: exact mid-epoch resume is tested with num_workers=0 only; worker processes prefetch
        # indices from the sampler ahead of the training step.
        return StatefulDataLoader(
            self.train_set,
            batch_sampler=self._train_batch_sampler(),
            collate_fn=batch_collate,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    @override
    def val_dataloader(self) -> DataLoader:
        return self._eval_loader(self.val_set)

    @override
    def test_dataloader(self) -> DataLoader:
        if len(self.test_set) == 0:
            raise ConfigError("data.test_fraction is 0, so there is no test set; set it above 0 to run test")
        return self._eval_loader(self.test_set)

    @override
    def predict_dataloader(self) -> DataLoader:
        return self._eval_loader(self.test_set if len(self.test_set) > 0 else self.val_set)
