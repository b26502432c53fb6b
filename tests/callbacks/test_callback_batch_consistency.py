"""BatchConsistencyCheck on real Trainers: faulty toy models, the template's TabularModel, and side effects."""

from __future__ import annotations

import warnings

import pytest
import torch
from lightning.pytorch import Callback, Trainer, seed_everything
from torch.utils.data import DataLoader
from toy_models import (
    BatchCenteringRegression,
    BatchNormRegression,
    BroadcastTargetRegression,
    LinearRegression,
    SumLossRegression,
    noise_regression,
    weights_of,
)

from lightning_app.callbacks import BatchConsistencyCheck, BatchConsistencyError
from lightning_app.data import GaussianClasses, NoiseRegression, TabularDataModule
from lightning_app.errors import ConfigError
from lightning_app.model import TabularModel


class BatchRecorder(Callback):
    """Record the targets of every training batch."""

    def __init__(self) -> None:
        self.targets: list[torch.Tensor] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.targets.append(batch[1].clone())


def _fit(
    model, check: BatchConsistencyCheck, kwargs: dict, loader: DataLoader | None = None, max_steps: int = 3
) -> Trainer:
    trainer = Trainer(max_steps=max_steps, callbacks=[check], **kwargs)
    trainer.fit(model, loader or DataLoader(noise_regression(64), batch_size=16))
    return trainer


def test_check_silent_on_correct_model(quiet_trainer_kwargs: dict) -> None:
    check = BatchConsistencyCheck(mode="fail")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        _fit(LinearRegression(), check, quiet_trainer_kwargs)

    assert not [warning for warning in record if "batch-consistency" in str(warning.message)]
    assert check.findings == []
    assert check.result is not None
    assert check.result.num_samples == 8
    assert check.result.loss_error < 1e-5
    assert check.result.grad_error < 1e-5
    assert check.result.mixing_error < 1e-5


@pytest.mark.parametrize(
    ("model_class", "expected"),
    [
        (BroadcastTargetRegression, "broadcasts to (B, B)"),
        (SumLossRegression, "reduction='sum'"),
        (BatchCenteringRegression, "Samples are not independent"),
    ],
)
def test_check_warns_about_faulty_model(quiet_trainer_kwargs: dict, model_class, expected: str) -> None:
    check = BatchConsistencyCheck(mode="warn")
    with pytest.warns(UserWarning, match="batch-consistency check on 8 samples"):
        trainer = _fit(model_class(), check, quiet_trainer_kwargs)

    assert trainer.global_step == 3
    assert any(expected in finding for finding in check.findings)


def test_sum_loss_is_not_reported_as_mixing(quiet_trainer_kwargs: dict) -> None:
    check = BatchConsistencyCheck(mode="warn")
    with pytest.warns(UserWarning):
        _fit(SumLossRegression(), check, quiet_trainer_kwargs)

    assert check.result.loss_error == pytest.approx(7.0, rel=1e-4)
    assert check.result.mixing_error < 1e-5
    assert not any("not independent" in finding for finding in check.findings)


@pytest.mark.parametrize("model_class", [BroadcastTargetRegression, SumLossRegression, BatchCenteringRegression])
def test_fail_mode_raises_before_first_step(quiet_trainer_kwargs: dict, model_class) -> None:
    seed_everything(0)
    model = model_class()
    initial = weights_of(model)
    check = BatchConsistencyCheck(mode="fail")
    with pytest.raises(BatchConsistencyError, match="batch-consistency check failed"):
        _fit(model, check, quiet_trainer_kwargs)

    for name, value in weights_of(model).items():
        torch.testing.assert_close(value, initial[name], rtol=0, atol=0)


def test_batch_norm_gives_explained_warning_only(quiet_trainer_kwargs: dict) -> None:
    model = BatchNormRegression()
    running_mean = model.hidden[1].running_mean.clone()
    check = BatchConsistencyCheck(mode="fail")
    with pytest.warns(UserWarning, match="BatchNorm layer\\(s\\) in training mode") as record:
        _fit(model, check, quiet_trainer_kwargs, max_steps=1)

    messages = [str(warning.message) for warning in record if "BatchNorm" in str(warning.message)]
    assert check.findings == []
    assert len(messages) == 1
    assert "batch training differs from per-sample training by design" in messages[0]
    # One real training step updates the running statistics once; the check's passes ran on a copy.
    assert not torch.equal(model.hidden[1].running_mean, running_mean)
    assert model.hidden[1].num_batches_tracked.item() == 1


def test_single_sample_batches_use_dataset_samples(quiet_trainer_kwargs: dict) -> None:
    dataset = noise_regression(64)
    seed_everything(5)
    reference = BatchRecorder()
    Trainer(max_steps=6, callbacks=[reference], **quiet_trainer_kwargs).fit(
        LinearRegression(), DataLoader(dataset, batch_size=1, shuffle=True)
    )

    seed_everything(5)
    check = BatchConsistencyCheck(mode="fail")
    recorder = BatchRecorder()
    Trainer(max_steps=6, callbacks=[check, recorder], **quiet_trainer_kwargs).fit(
        LinearRegression(), DataLoader(dataset, batch_size=1, shuffle=True)
    )

    assert check.result.num_samples == 8
    # The check must not change the shuffled order of the training data.
    assert torch.equal(torch.cat(recorder.targets), torch.cat(reference.targets))


@pytest.mark.parametrize(
    ("source", "network"),
    [
        (NoiseRegression(num_samples=200), {"hidden_sizes": [16], "dropout": 0.2}),
        (GaussianClasses(counts=(150, 50)), {"hidden_sizes": [16], "norm": "layer"}),
    ],
)
def test_check_silent_on_tabular_model(quiet_trainer_kwargs: dict, source, network: dict) -> None:
    datamodule = TabularDataModule(source, batch_size=16)
    model = TabularModel(
        num_features=datamodule.num_features,
        num_outputs=datamodule.num_outputs,
        task=datamodule.task_name,
        **network,
    )
    check = BatchConsistencyCheck(mode="fail")
    Trainer(max_steps=2, callbacks=[check], **quiet_trainer_kwargs).fit(model, datamodule=datamodule)

    assert check.findings == []
    assert check.result.loss_error < 1e-4
    assert check.result.mixing_error < 1e-4


def test_invalid_arguments_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="mode is 'strict'"):
        BatchConsistencyCheck(mode="strict")
    with pytest.raises(ConfigError, match="max_samples is 1"):
        BatchConsistencyCheck(max_samples=1)


class _SummedTabularModel(TabularModel):
    """A user's subclass of the template's model that sums the loss over the batch."""

    def compute_loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.mse_loss(outputs, targets, reduction="sum")


def test_check_flags_faulty_tabular_subclass(quiet_trainer_kwargs: dict) -> None:
    datamodule = TabularDataModule(NoiseRegression(num_samples=200), batch_size=16)
    model = _SummedTabularModel(num_features=datamodule.num_features, num_outputs=1, task="regression")
    check = BatchConsistencyCheck(mode="fail")
    with pytest.raises(BatchConsistencyError, match="reduction='sum'"):
        Trainer(max_steps=2, callbacks=[check], **quiet_trainer_kwargs).fit(model, datamodule=datamodule)

    assert model.global_step == 0
