"""Print the largest learning rate at which full-batch gradient descent on a linear MSE model is stable.

Usage: python -m lightning_app.stability CONFIG.yaml

For mean-reduced MSE on a linear model the Hessian is exactly H = (2 / n) X^T X, with X the
standardised training features plus a column of ones for the bias. Gradient descent on this
quadratic diverges when lr * lambda_max(H) > 2 (Cohen et al. 2021, "Gradient Descent on Neural
Networks Typically Occurs at the Edge of Stability", arXiv 2103.00065), so 2 / lambda_max is the
critical learning rate for full-batch steps.

A step on one sample x uses only that sample's Hessian 2 x x^T, whose top eigenvalue is 2 |x|^2
(x with the bias entry), so at batch size 1 a step overshoots the sample's own minimum when
lr > 1 / |x|^2. With 10 standard-normal features |x|^2 is about 11, so per-sample steps are
stable only below about 0.09, ten times below the full-batch limit.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from lightning_app.config_data import datamodule_from_config
from lightning_app.data import TabularDataModule
from lightning_app.errors import ConfigError


def _design_matrix(data: TabularDataModule) -> torch.Tensor:
    data.setup("fit")
    if data.task_name != "regression":
        raise ConfigError(
            f"the exact MSE Hessian needs a regression task, but the data's task is {data.task_name}; "
            "use a regression config"
        )
    features = data.train_set.features.double()
    return torch.cat([features, torch.ones(features.shape[0], 1, dtype=torch.double)], dim=1)


def mse_hessian_top_eigenvalue(data: TabularDataModule) -> float:
    """Return lambda_max of the mean-MSE Hessian of a linear model on the training split."""
    design = _design_matrix(data)
    hessian = 2.0 / design.shape[0] * design.T @ design
    return float(torch.linalg.eigvalsh(hessian)[-1])


def per_sample_critical_lr(data: TabularDataModule) -> tuple[float, float]:
    """Return the median and minimum over training samples of 1 / |x|^2 (x with the bias entry)."""
    squared_norms = _design_matrix(data).square().sum(dim=1)
    limits = 1.0 / squared_norms
    return float(limits.median()), float(limits.min())


def main() -> None:
    arguments = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    arguments.add_argument("config", type=Path)
    config = arguments.parse_args().config

    try:
        data = datamodule_from_config(config)
        top = mse_hessian_top_eigenvalue(data)
        median, smallest = per_sample_critical_lr(data)
    except (ConfigError, OSError) as error:
        raise SystemExit(f"error: {error}") from None
    print(f"lambda_max of the full-batch MSE Hessian:  {top:.4f}")
    print(f"full-batch critical learning rate:         {2.0 / top:.4f}")
    print(f"one-sample overshoot learning rate 1/|x|^2: median {median:.4f}, smallest {smallest:.4f}")


if __name__ == "__main__":
    main()
