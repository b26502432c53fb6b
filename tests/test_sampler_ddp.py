"""Stratified batches under real DDP: the CLI in a subprocess with two CPU processes (gloo).

``IndexRecorder`` runs inside the training processes: it maps each batch's rows back to training-set
indices and writes them per rank, so the test can check what every rank received.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from typing_extensions import override

from lightning_app.data import GaussianClasses, TabularDataModule
from lightning_app.samplers import StratifiedBatchSampler

COUNTS = [210, 70, 30]
BATCH_SIZE = 16  # global: 8 rows per process
SEED = 7


class IndexRecorder(Callback):
    """Record the training-set index of every row each rank trains on, and write them on train end.

    Rows are matched by their first feature, which is continuous and so unique within the split.
    """

    def __init__(self, output_dir: str) -> None:
        self.output_dir = Path(output_dir)
        self.batches: list[tuple[int, list[int]]] = []
        self.val_batch_sizes: list[tuple[int, int]] = []
        self._keys: torch.Tensor | None = None
        self._order: torch.Tensor | None = None

    @override
    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        first_feature = trainer.datamodule.train_set.features[:, 0]
        self._keys, self._order = torch.sort(first_feature)

    @override
    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch, batch_idx: int) -> None:
        features = batch[0][:, 0].cpu()
        position = torch.searchsorted(self._keys, features).clamp(max=self._keys.numel() - 1)
        if not torch.equal(self._keys[position], features):
            raise RuntimeError("a training row did not match the training set")
        self.batches.append((trainer.current_epoch, self._order[position].tolist()))

    @override
    def on_validation_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if not trainer.sanity_checking:
            self.val_batch_sizes.append((trainer.current_epoch, len(batch[1])))

    @override
    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        record = {
            "rank": trainer.global_rank,
            "world_size": trainer.world_size,
            "batches": self.batches,
            "val_batch_sizes": self.val_batch_sizes,
        }
        (self.output_dir / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))


def write_config(tmp_path: Path) -> Path:
    config = f"""
trainer:
  max_epochs: 2
  enable_progress_bar: false
  callbacks:
    - class_path: tests.test_sampler_ddp.IndexRecorder
      init_args:
        output_dir: {tmp_path / "indices"}
model:
  hidden_sizes: [8]
data:
  source:
    class_path: lightning_app.data.GaussianClasses
    init_args:
      counts: {COUNTS}
      num_features: 5
      seed: 3
  batch_size: {BATCH_SIZE}
  sampler: stratified
  seed: {SEED}
"""
    path = tmp_path / "ddp_stratified.yaml"
    path.write_text(config)
    return path


@pytest.mark.slow
@pytest.mark.ddp
def test_ddp_ranks_get_stratified_disjoint_shares(tmp_path: Path, run_cli) -> None:
    config = write_config(tmp_path)
    args = ["fit", "--config", str(config), "--trainer.strategy", "ddp", "--trainer.devices", "2"]
    result = run_cli([*args, "--trainer.accelerator", "cpu"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]

    records = [json.loads((tmp_path / "indices" / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert [record["world_size"] for record in records] == [2, 2]

    datamodule = TabularDataModule(GaussianClasses(counts=COUNTS, num_features=5, seed=3), seed=SEED)
    datamodule.setup("fit")
    labels = datamodule.train_set.targets
    shares = torch.bincount(labels).double() / labels.numel()
    expected = StratifiedBatchSampler(groups=labels, batch_size=BATCH_SIZE, seed=SEED)

    epochs: list[list[torch.Tensor]] = []
    for epoch in (0, 1):
        per_rank = [[torch.tensor(ids) for e, ids in record["batches"] if e == epoch] for record in records]
        assert len(per_rank[0]) == len(per_rank[1]) == len(expected), "ranks must run the same number of steps"
        expected.set_epoch(epoch)
        for step, global_batch in enumerate(expected):
            first, second = per_rank[0][step], per_rank[1][step]
            assert not set(first.tolist()) & set(second.tolist()), f"epoch {epoch} step {step}: shares overlap"
            union = torch.sort(torch.cat([first, second])).values
            assert torch.equal(union, torch.sort(global_batch).values), "union must equal the single-process batch"
            for share in (first, second):
                counts = torch.bincount(labels[share], minlength=shares.numel()).double()
                target = shares * share.numel()
                assert bool(((counts >= torch.floor(target - 1e-9)) & (counts <= torch.ceil(target + 1e-9))).all())
        epoch_indices = torch.cat([torch.cat(batches) for batches in per_rank])
        assert torch.equal(torch.sort(epoch_indices).values, torch.arange(labels.numel()))
        epochs.append(per_rank[0])
    assert not all(torch.equal(a, b) for a, b in zip(epochs[0], epochs[1], strict=True)), "epochs must differ"

    # Validation keeps its batch size under DDP: each rank gets half of the validation rows, in
    # batches of eval_batch_size (which defaults to batch_size).
    rows_per_rank = -(-len(datamodule.val_set) // 2)
    expected_sizes = [BATCH_SIZE] * (rows_per_rank // BATCH_SIZE) + [rows_per_rank % BATCH_SIZE] * bool(rows_per_rank % BATCH_SIZE)
    for record in records:
        for epoch in (0, 1):
            sizes = [size for e, size in record["val_batch_sizes"] if e == epoch]
            assert sizes == expected_sizes, f"rank {record['rank']} epoch {epoch}: validation batch sizes {sizes}"
