"""The exact critical learning rate of full-batch gradient descent, checked by real training."""

from __future__ import annotations

import math

import pytest
import torch
from lightning.pytorch import Trainer

from lightning_app.data import NoiseRegression, TabularDataModule
from lightning_app.model import TabularModel
from lightning_app.stability import mse_hessian_top_eigenvalue, per_sample_critical_lr


def _full_batch_data() -> TabularDataModule:
    return TabularDataModule(
        NoiseRegression(num_samples=1250, num_features=10, seed=0),
        batch_size=1000,
        test_fraction=0.0,
        standardize=False,
    )


def _final_train_loss(data: TabularDataModule, lr: float, steps: int) -> float:
    torch.manual_seed(0)
    model = TabularModel(
        num_features=data.num_features,
        num_outputs=1,
        task="regression",
        optimizer=lambda parameters: torch.optim.SGD(parameters, lr=lr),
    )
    trainer = Trainer(
        max_steps=steps,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, datamodule=data)
    return float(trainer.callback_metrics["train/loss"])


def test_hessian_eigenvalue_matches_power_iteration():
    data = _full_batch_data()
    top = mse_hessian_top_eigenvalue(data)
    features = data.train_set.features.double()
    design = torch.cat([features, torch.ones(len(features), 1, dtype=torch.double)], dim=1)

    vector = torch.ones(design.shape[1], dtype=torch.double)
    for _ in range(200):
        vector = 2.0 / len(design) * design.T @ (design @ vector)
        estimate = vector.norm().item()
        vector = vector / vector.norm()
    assert top == pytest.approx(estimate, rel=1e-6)


def test_per_sample_limit_is_inverse_squared_norm():
    data = _full_batch_data()
    median, smallest = per_sample_critical_lr(data)
    squared_norms = data.train_set.features.double().square().sum(dim=1) + 1.0

    assert median == pytest.approx(float((1.0 / squared_norms).median()))
    assert smallest == pytest.approx(float(1.0 / squared_norms.max()))


def test_full_batch_sgd_stable_below_critical_lr():
    data = _full_batch_data()
    critical = 2.0 / mse_hessian_top_eigenvalue(data)

    below = _final_train_loss(data, 0.95 * critical, steps=100)
    above = _final_train_loss(data, 1.05 * critical, steps=100)

    assert below < 1.1
    assert not math.isfinite(above) or above > 1e3
