"""Small LightningModules and data for the training-health callback tests."""

from __future__ import annotations

import torch
from lightning.pytorch import LightningModule
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


def noise_regression(num_samples: int = 1000, num_features: int = 10, seed: int = 0) -> TensorDataset:
    """Standard-normal inputs with pure-noise standard-normal targets of shape (N,)."""
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(num_samples, num_features, generator=generator)
    targets = torch.randn(num_samples, generator=generator)
    return TensorDataset(features, targets)


def full_batch_loader(dataset: TensorDataset) -> DataLoader:
    """One batch holding the whole dataset, in a fixed order."""
    return DataLoader(dataset, batch_size=len(dataset), shuffle=False)


class LinearRegression(LightningModule):
    """``nn.Linear(F, 1)`` trained with mean-squared error and SGD.

    Args:
        num_features: input width.
        lr: SGD learning rate.
        nan_steps: optimizer steps (``global_step`` values) whose loss is replaced by NaN.
        nan_rank: the only rank that injects NaN; None means every rank.
        nan_loss_only: make the reported loss NaN but keep the gradients finite.
        momentum: SGD momentum, so that optimizer state exists.
    """

    def __init__(
        self,
        num_features: int = 10,
        lr: float = 0.1,
        nan_steps: tuple[int, ...] = (),
        nan_rank: int | None = None,
        nan_loss_only: bool = False,
        momentum: float = 0.0,
    ) -> None:
        super().__init__()
        self.net = nn.Linear(num_features, 1)
        self.lr = lr
        self.momentum = momentum
        self.nan_steps = set(nan_steps)
        self.nan_rank = nan_rank
        self.nan_loss_only = nan_loss_only
        self.losses: list[torch.Tensor] = []

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features).squeeze(-1)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        features, targets = batch
        loss = nn.functional.mse_loss(self(features), targets)
        inject = self.global_step in self.nan_steps and (self.nan_rank is None or self.global_rank == self.nan_rank)
        if inject:
            nan = torch.full((), float("nan"), device=loss.device)
            loss = loss + nan * loss.detach() if self.nan_loss_only else loss * nan
        self.losses.append(loss.detach())
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        features, targets = batch
        self.log("val/loss", nn.functional.mse_loss(self(features), targets))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=self.momentum)


class BroadcastTargetRegression(LinearRegression):
    """Compares an (N, 1) output with an (N,) target, so the loss broadcasts to (N, N)."""

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        features, targets = batch
        return nn.functional.mse_loss(self.net(features), targets)


class SumLossRegression(LinearRegression):
    """Sums the squared errors over the batch instead of averaging them."""

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        features, targets = batch
        return nn.functional.mse_loss(self(features), targets, reduction="sum")


class BatchCenteringRegression(LinearRegression):
    """Subtracts the batch mean from the features, so each sample's output depends on its batch mates."""

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        features, targets = batch
        centered = features - features.mean(0, keepdim=True)
        return nn.functional.mse_loss(self(centered), targets)


class BatchNormRegression(LinearRegression):
    """A hidden layer with BatchNorm1d in front of the linear output."""

    def __init__(self, num_features: int = 10, **kwargs) -> None:
        super().__init__(num_features=8, **kwargs)
        self.hidden = nn.Sequential(nn.Linear(num_features, 8), nn.BatchNorm1d(8), nn.Tanh())

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(self.hidden(features)).squeeze(-1)


def weights_of(module: nn.Module) -> dict[str, torch.Tensor]:
    """Copy a module's state dict."""
    return {name: value.detach().clone() for name, value in module.state_dict().items()}


def full_batch_loss(model: LinearRegression, dataset: TensorDataset) -> float:
    """Mean-squared error of ``model`` on the whole dataset."""
    features, targets = dataset.tensors
    with torch.no_grad():
        return float(nn.functional.mse_loss(model(features), targets))
