"""Compare a linear run's validation MSE with the exact least-squares fit on the same split.

Usage: python -m lightning_app.least_squares RUN_DIR
RUN_DIR is a run directory such as logs/diabetes_linear/version_0; its saved config.yaml gives the data.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from lightning_app.config_data import datamodule_from_config
from lightning_app.data import TabularDataModule
from lightning_app.errors import ConfigError
from lightning_app.summary import read_scalars


def least_squares_val_mse(data: TabularDataModule) -> float:
    """Return the validation MSE, in the target's original units, of the least-squares fit on train."""
    data.setup("fit")

    def design(features: torch.Tensor) -> torch.Tensor:
        # A column of ones fits the bias, as the linear model has one.
        return torch.cat([features.double(), torch.ones(features.shape[0], 1, dtype=torch.double)], dim=1)

    train, val = data.train_set, data.val_set
    solution = torch.linalg.lstsq(design(train.features), train.targets.double().unsqueeze(1)).solution
    errors = design(val.features) @ solution - val.targets.double().unsqueeze(1)
    return float(errors.square().mean()) * data.target_std**2


def main() -> None:
    arguments = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    arguments.add_argument("run_dir", type=Path)
    run_dir = arguments.parse_args().run_dir

    try:
        val_mse = read_scalars(run_dir).get("val/mse")
        if not val_mse:
            raise ConfigError(f"{run_dir} has no val/mse scalar; pass the run directory of a regression run")
        optimum = least_squares_val_mse(datamodule_from_config(run_dir / "config.yaml"))
    except (ConfigError, OSError) as error:
        raise SystemExit(f"error: {error}") from None
    final_step, final_value = val_mse[-1]
    print(f"validation MSE after step {final_step}: {final_value:.1f}")
    print(f"least-squares validation MSE:     {optimum:.1f}")
    print(f"relative difference:              {(final_value - optimum) / optimum:+.2%}")


if __name__ == "__main__":
    main()
