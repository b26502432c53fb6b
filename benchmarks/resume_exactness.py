"""Resume mid-epoch from a checkpoint and compare the final weights with an uninterrupted run.

Three training loaders, all on the same data, model and seed:

- ``torch``: torch's BatchSampler(RandomSampler(generator)) in a plain DataLoader;
- ``torch-stateful``: the same batch sampler in torchdata's StatefulDataLoader;
- ``template``: the template's RandomBatchSampler in a StatefulDataLoader (the datamodule's default).

    python benchmarks/resume_exactness.py

Prints the largest absolute weight difference after resuming in the second epoch (0 means exact).
"""

from __future__ import annotations

import sys
import tempfile
from functools import partial
from pathlib import Path

import torch
from lightning.pytorch import Trainer, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import BatchSampler, DataLoader, RandomSampler
from torchdata.stateful_dataloader import StatefulDataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lightning_app.data import GaussianClasses, TabularDataModule, batch_collate
from lightning_app.model import TabularModel

BATCH_SIZE = 16


class TorchSamplerData(TabularDataModule):
    """The datamodule with torch's seeded BatchSampler(RandomSampler) in the given loader class."""

    def __init__(self, loader_class: type, **kwargs) -> None:
        super().__init__(**kwargs)
        self.loader_class = loader_class

    def train_dataloader(self) -> DataLoader:
        generator = torch.Generator().manual_seed(self.seed)
        batches = BatchSampler(RandomSampler(self.train_set, generator=generator), self.batch_size, drop_last=False)
        return self.loader_class(self.train_set, batch_sampler=batches, collate_fn=batch_collate)


def make(kind: str) -> tuple[TabularDataModule, TabularModel]:
    source = GaussianClasses(counts=(210, 70, 30), num_features=5, seed=3)
    if kind == "template":
        datamodule = TabularDataModule(source, batch_size=BATCH_SIZE, seed=7)
    else:
        loader = DataLoader if kind == "torch" else StatefulDataLoader
        datamodule = TorchSamplerData(loader, source=source, batch_size=BATCH_SIZE, seed=7)
    optimizer = partial(torch.optim.SGD, lr=0.05, momentum=0.9)
    model = TabularModel(datamodule.num_features, datamodule.num_outputs, datamodule.task_name, [8], optimizer=optimizer)
    return datamodule, model


def trainer(root: Path, **kwargs) -> Trainer:
    options = {"logger": False, "enable_progress_bar": False, "enable_model_summary": False}
    options.update({"enable_checkpointing": False, "default_root_dir": root, "accelerator": "cpu"})
    return Trainer(**{**options, **kwargs})


def weight_difference(kind: str, root: Path) -> float:
    seed_everything(0)
    datamodule, reference = make(kind)
    trainer(root / "full", max_epochs=3).fit(reference, datamodule=datamodule)
    stop = -(-len(datamodule.train_set) // BATCH_SIZE) + 5

    seed_everything(0)
    datamodule, interrupted = make(kind)
    checkpoint = ModelCheckpoint(dirpath=root / "ckpt", every_n_train_steps=stop, save_top_k=-1)
    trainer(root / "part", max_steps=stop, callbacks=[checkpoint], enable_checkpointing=True).fit(
        interrupted, datamodule=datamodule
    )
    seed_everything(123)  # a new process starts from another global RNG state
    datamodule, resumed = make(kind)
    trainer(root / "resumed", max_epochs=3).fit(
        resumed, datamodule=datamodule, ckpt_path=checkpoint.last_model_path or next((root / "ckpt").glob("*.ckpt"))
    )
    return max(
        float((a - b).abs().max()) for a, b in zip(reference.state_dict().values(), resumed.state_dict().values())
    )


def main() -> None:
    results = {}
    for kind in ("torch", "torch-stateful", "template"):
        with tempfile.TemporaryDirectory() as root:
            results[kind] = weight_difference(kind, Path(root))
    print("| training loader | max abs weight difference after resuming |")
    print("|---|---|")
    for kind, difference in results.items():
        print(f"| {kind} | {difference:.3g} |")


if __name__ == "__main__":
    main()
