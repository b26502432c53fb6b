"""The shipped linear model, trained by the real CLI, against the closed-form least-squares fit."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lightning_app.data import FileSource, TabularDataModule
from lightning_app.config_data import datamodule_from_config
from lightning_app.least_squares import least_squares_val_mse


@pytest.mark.slow
def test_linear_diabetes_matches_least_squares(run_cli, read_scalars, repo_root, tmp_path):
    result = run_cli(
        [
            "fit",
            "--config",
            "configs/diabetes_linear.yaml",
            "--trainer.logger.init_args.save_dir",
            str(tmp_path),
            "--trainer.enable_progress_bar",
            "false",
        ]
    )
    assert result.returncode == 0, result.stderr
    run_dir = tmp_path / "diabetes_linear" / "version_0"

    # The same split and standardisation as the run: the config's FileSource with data.seed 0.
    data = TabularDataModule(FileSource(str(repo_root / "data" / "diabetes.csv"), target="target"))
    optimum = least_squares_val_mse(data)
    val_mse = read_scalars(run_dir)["val/mse"]
    assert len(val_mse) == 100
    final = val_mse[-1][1]
    assert abs(final - optimum) / optimum < 0.02, f"validation MSE {final:.1f}, least squares {optimum:.1f}"

    # The report command rebuilds the data from the saved config and prints the same two numbers.
    assert least_squares_val_mse(datamodule_from_config(run_dir / "config.yaml")) == pytest.approx(optimum)
    report = subprocess.run(
        [sys.executable, "-m", "lightning_app.least_squares", str(run_dir)],
        cwd=repo_root,
        capture_output=True,
        text=True,
        check=True,
    )
    assert f"least-squares validation MSE:     {optimum:.1f}" in report.stdout
