"""Batch samplers inside a real Trainer: epoch reshuffling, exact mid-epoch resume, loaders and bad options."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Trainer, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint

from lightning_app.data import FileSource, GaussianClasses, NoiseRegression, TabularDataModule
from lightning_app.errors import ConfigError
from lightning_app.model import TabularModel
from lightning_app.samplers import StratifiedBatchSampler

# 126 + 42 + 18 + ... rows: three classes, batch 16 does not divide the training split.
COUNTS = (210, 70, 30)


def make_datamodule(sampler: str = "stratified", **options) -> TabularDataModule:
    source = GaussianClasses(counts=COUNTS, num_features=5, seed=3)
    return TabularDataModule(source, batch_size=16, sampler=sampler, seed=7, **options)


def make_model(datamodule: TabularDataModule) -> TabularModel:
    return TabularModel(
        num_features=datamodule.num_features,
        num_outputs=datamodule.num_outputs,
        task=datamodule.task_name,
        hidden_sizes=[8],
        optimizer=partial(torch.optim.SGD, lr=0.05, momentum=0.9),
    )


def make_trainer(tmp_path: Path, **kwargs) -> Trainer:
    defaults = {
        "accelerator": "cpu",
        "devices": 1,
        "logger": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "enable_checkpointing": False,
        "default_root_dir": tmp_path,
    }
    return Trainer(**{**defaults, **kwargs})


def record_fetches(datamodule: TabularDataModule) -> list[torch.Tensor]:
    """Record every index batch that the training loader fetches from the training set."""
    fetched: list[torch.Tensor] = []
    fetch = datamodule.train_set.__getitems__

    def recording(indices):
        fetched.append(torch.as_tensor(indices).clone())
        return fetch(indices)

    datamodule.train_set.__getitems__ = recording
    return fetched


def test_trainer_reshuffles_each_epoch(tmp_path: Path) -> None:
    datamodule = make_datamodule()
    datamodule.setup("fit")
    fetched = record_fetches(datamodule)
    trainer = make_trainer(tmp_path, max_epochs=2, limit_val_batches=0)
    trainer.fit(make_model(datamodule), datamodule=datamodule)

    expected = StratifiedBatchSampler(groups=datamodule.train_set.targets, batch_size=16, seed=7)
    per_epoch = len(expected)
    assert len(fetched) == 2 * per_epoch
    for epoch in range(2):
        expected.set_epoch(epoch)
        got = fetched[epoch * per_epoch : (epoch + 1) * per_epoch]
        assert all(torch.equal(a, b) for a, b in zip(got, expected, strict=True)), f"epoch {epoch} differs"
    assert not all(torch.equal(a, b) for a, b in zip(fetched[:per_epoch], fetched[per_epoch:], strict=True))


def final_weights(model: TabularModel) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


@pytest.mark.parametrize("sampler", ["stratified", "balanced", "random"])
def test_resume_mid_epoch_gives_same_weights(tmp_path: Path, sampler: str) -> None:
    seed_everything(0)
    datamodule = make_datamodule(sampler)
    reference = make_model(datamodule)
    make_trainer(tmp_path / "full", max_epochs=3).fit(reference, datamodule=datamodule)

    steps_per_epoch = -(-len(datamodule.train_set) // 16)
    stop_step = steps_per_epoch + 5  # inside the second epoch
    assert stop_step % steps_per_epoch != 0
    seed_everything(0)
    datamodule = make_datamodule(sampler)
    interrupted = make_model(datamodule)
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=stop_step, save_top_k=-1)
    trainer = make_trainer(tmp_path / "part", max_steps=stop_step, callbacks=[checkpoint], enable_checkpointing=True)
    trainer.fit(interrupted, datamodule=datamodule)
    saved = list((tmp_path / "ckpt").glob("*.ckpt"))
    assert len(saved) == 1
    loop_state = torch.load(saved[0], weights_only=False)["loops"]["fit_loop"]["state_dict"]
    assert loop_state["combined_loader"][0]["_index_sampler_state"]["batches_yielded"] == 5

    # A fresh process would start from a different global RNG state; the sampler must not depend on it.
    seed_everything(123)
    datamodule = make_datamodule(sampler)
    resumed = make_model(datamodule)
    make_trainer(tmp_path / "resumed", max_epochs=3).fit(resumed, datamodule=datamodule, ckpt_path=saved[0])

    expected, got = final_weights(reference), final_weights(resumed)
    assert expected.keys() == got.keys()
    for name in expected:
        assert torch.equal(expected[name], got[name]), f"{name} differs after resuming"


def test_eval_loaders_stay_sequential() -> None:
    datamodule = make_datamodule("balanced")
    datamodule.setup("fit")
    loaders = ((datamodule.val_dataloader(), datamodule.val_set), (datamodule.test_dataloader(), datamodule.test_set))
    for loader, dataset in loaders:
        order = torch.cat([torch.as_tensor(batch) for batch in loader.batch_sampler])
        assert torch.equal(order, torch.arange(len(dataset)))


def test_regression_groups_by_target_bins() -> None:
    datamodule = TabularDataModule(
        NoiseRegression(num_samples=400, num_features=3), batch_size=20, sampler="balanced", num_bins=4
    )
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()
    targets = datamodule.train_set.targets
    edges = torch.quantile(targets.double(), torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64))
    for batch in loader.batch_sampler:
        bins = torch.bucketize(targets[batch].double(), edges, right=True)
        assert torch.bincount(bins, minlength=4).tolist() == [5, 5, 5, 5]


def test_group_column_groups_rows(tmp_path: Path) -> None:
    rows = ["x,target,site"] + [f"{i * 0.1},{i % 3},{'ab'[i % 5 == 0]}" for i in range(100)]
    (tmp_path / "sites.csv").write_text("\n".join(rows) + "\n")
    source = FileSource(str(tmp_path / "sites.csv"), target="target", group="site")
    datamodule = TabularDataModule(source, batch_size=10, sampler="balanced", group_by="groups", seed=1)
    datamodule.setup("fit")
    groups = datamodule.train_set.groups
    for batch in datamodule.train_dataloader().batch_sampler:
        assert torch.bincount(groups[batch], minlength=2).tolist() == [5, 5]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"sampler": "imbalanced", "proportions": {0: 0.5, 7: 0.5}}, "names group 7"),
        ({"sampler": "imbalanced", "proportions": {0: 0.5, 1: 0.2}}, "sum to 0.7"),
        ({"sampler": "balanced", "batch_size": 2}, "smaller than the 3 groups"),
        ({"sampler": "stratified", "group_by": "groups", "source": NoiseRegression()}, "has no group column"),
        ({"sampler": "balanced", "num_bins": 500, "source": NoiseRegression(num_samples=100)}, "fewer than 500 bins"),
        ({"sampler": "random", "long_tail_ratio": 0.1}, "apply to the imbalanced sampler"),
        ({"sampler": "stratified", "num_batches": 3}, "leave it unset"),
        ({"sampler": "shuffled"}, "data.sampler is 'shuffled'"),
    ],
)
def test_bad_sampler_options_fail_early(options: dict, message: str) -> None:
    source = options.pop("source", GaussianClasses(counts=COUNTS, num_features=5, seed=3))
    datamodule = TabularDataModule(source, **{"batch_size": 16, **options})
    with pytest.raises(ConfigError, match=message):
        datamodule.num_features  # noqa: B018 (the CLI reads this while it links arguments)


def test_unknown_group_column_fails(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("x,target\n" + "".join(f"{i},{i % 2}\n" for i in range(20)))
    source = FileSource(str(tmp_path / "data.csv"), target="target", group="site")
    datamodule = TabularDataModule(source, batch_size=4, sampler="stratified", group_by="groups")
    with pytest.raises(ConfigError, match="site"):
        datamodule.setup("fit")
