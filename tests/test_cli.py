"""The real CLI in a subprocess: fit, event files, saved config, checkpoints, validate, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

pytestmark = pytest.mark.slow

QUICK = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def _fit_diabetes(run_cli, log_dir: Path, *extra: str):
    return run_cli(
        [
            "fit",
            "--config",
            "configs/diabetes_linear.yaml",
            "--trainer.max_epochs",
            "3",
            "--trainer.logger.init_args.save_dir",
            str(log_dir),
            *QUICK,
            *extra,
        ]
    )


@pytest.mark.slow
def test_fit_writes_events_config_and_checkpoint(run_cli, read_scalars, tmp_path):
    result = _fit_diabetes(run_cli, tmp_path)
    assert result.returncode == 0, result.stderr

    run_dir = tmp_path / "diabetes_linear" / "version_0"
    scalars = read_scalars(run_dir)
    assert len(scalars["train/loss"]) == 3
    assert len(scalars["val/loss"]) == 3
    assert "val/mse" in scalars
    assert "val/r2" in scalars
    assert "lr-SGD" in scalars

    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["seed_everything"] == 42
    assert saved["model"]["optimizer"]["class_path"] == "torch.optim.SGD"
    assert saved["model"]["optimizer"]["init_args"]["lr"] == 0.01

    last = run_dir / "checkpoints" / "last.ckpt"
    assert last.is_file()
    checkpoint = torch.load(last, weights_only=False)
    assert checkpoint["epoch"] == 2
    assert checkpoint["hyper_parameters"]["num_features"] == 10

    validated = run_cli(
        [
            "validate",
            "--config",
            "configs/diabetes_linear.yaml",
            "--ckpt_path",
            str(last),
            "--trainer.logger.init_args.save_dir",
            str(tmp_path),
            *QUICK,
        ]
    )
    assert validated.returncode == 0, validated.stderr
    assert "val/mse" in validated.stdout
    reloaded = read_scalars(tmp_path / "diabetes_linear" / "version_1")
    assert reloaded["val/loss"][0][1] == pytest.approx(scalars["val/loss"][-1][1], rel=1e-5)


@pytest.mark.slow
def test_rerun_same_config_starts_new_version(run_cli, tmp_path):
    first = _fit_diabetes(run_cli, tmp_path, "--trainer.max_epochs", "1")
    second = _fit_diabetes(run_cli, tmp_path, "--trainer.max_epochs", "1")

    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    assert (tmp_path / "diabetes_linear" / "version_0" / "config.yaml").is_file()
    assert (tmp_path / "diabetes_linear" / "version_1" / "config.yaml").is_file()


def test_print_config_composes_preset(run_cli):
    result = run_cli(
        ["fit", "--config", "configs/digits_mlp.yaml", "--config", "configs/presets/quick.yaml", "--print_config"]
    )

    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    assert config["trainer"]["max_epochs"] == 3
    assert config["trainer"]["limit_train_batches"] == 10
    assert config["model"]["hidden_sizes"] == [128, 64]
    assert config["data"]["source"]["init_args"]["path"] == "data/digits.csv"


def test_optimizer_and_scheduler_from_command_line(run_cli):
    result = run_cli(
        [
            "fit",
            "--config",
            "configs/diabetes_linear.yaml",
            "--model.optimizer",
            "torch.optim.AdamW",
            "--model.optimizer.lr",
            "0.003",
            "--model.lr_scheduler",
            "torch.optim.lr_scheduler.StepLR",
            "--model.lr_scheduler.step_size",
            "10",
            "--print_config",
        ]
    )

    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    assert config["model"]["optimizer"]["class_path"] == "torch.optim.AdamW"
    assert config["model"]["optimizer"]["init_args"]["lr"] == 0.003
    assert config["model"]["lr_scheduler"]["class_path"] == "torch.optim.lr_scheduler.StepLR"


@pytest.mark.slow
def test_adam_and_step_scheduler_train(run_cli, read_scalars, tmp_path):
    result = _fit_diabetes(
        run_cli,
        tmp_path,
        "--model.optimizer",
        "torch.optim.Adam",
        "--model.optimizer.lr",
        "0.01",
        "--model.lr_scheduler",
        "torch.optim.lr_scheduler.StepLR",
        "--model.lr_scheduler.step_size",
        "1",
        "--model.lr_scheduler.gamma",
        "0.5",
    )

    assert result.returncode == 0, result.stderr
    learning_rates = [value for _, value in read_scalars(tmp_path / "diabetes_linear" / "version_0")["lr-Adam"]]
    assert learning_rates == pytest.approx([0.01, 0.005, 0.0025])


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (["--data.source.init_args.path", "data/missing.csv"], "data file not found: 'data/missing.csv'"),
        (["--data.source.init_args.target", "outcome"], "column 'outcome'"),
        (["--data.batch_size", "0"], "data.batch_size is 0"),
        (["--data.val_fraction", "1.5"], "data.val_fraction is 1.5"),
    ],
)
def test_bad_input_prints_one_line(run_cli, tmp_path, override, expected):
    result = run_cli(
        ["fit", "--config", "configs/diabetes_linear.yaml", "--trainer.logger.init_args.save_dir", str(tmp_path)]
        + override
    )

    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error: ")
    assert expected in last_line
    assert not (tmp_path / "diabetes_linear").exists()


@pytest.mark.slow
def test_classification_fit_test_predict(run_cli, read_scalars, tmp_path):
    logs = ["--trainer.logger.init_args.save_dir", str(tmp_path)]
    fitted = run_cli(
        ["fit", "--config", "configs/digits_mlp.yaml", "--config", "configs/presets/quick.yaml", *logs, *QUICK]
    )
    assert fitted.returncode == 0, fitted.stderr

    run_dir = tmp_path / "digits_mlp" / "version_0"
    scalars = read_scalars(run_dir)
    for tag in ("val/acc", "val/balanced_acc", "val/f1_macro", "val/recall/0", "val/recall/9"):
        assert len(scalars[tag]) == 3, tag
    events = EventAccumulator(str(run_dir))
    events.Reload()
    assert "val/confusion_matrix" in events.Tags()["images"]
    image = events.Images("val/confusion_matrix")[-1]
    assert (image.width, image.height) == (160, 160)

    checkpoint = str(run_dir / "checkpoints" / "last.ckpt")
    tested = run_cli(["test", "--config", "configs/digits_mlp.yaml", "--ckpt_path", checkpoint, *logs, *QUICK])
    assert tested.returncode == 0, tested.stderr
    assert "test/balanced_acc" in tested.stdout
    predicted = run_cli(["predict", "--config", "configs/digits_mlp.yaml", "--ckpt_path", checkpoint, *logs, *QUICK])
    assert predicted.returncode == 0, predicted.stderr


def test_last_checkpoint_is_latest_epoch(run_cli, tmp_path):
    # With lr 0 the validation loss never improves, so the best checkpoint stays at epoch 0 while
    # last.ckpt must follow the latest epoch.
    result = _fit_diabetes(run_cli, tmp_path, "--trainer.max_epochs", "2", "--model.optimizer.lr", "0.0")
    assert result.returncode == 0, result.stderr

    checkpoints = tmp_path / "diabetes_linear" / "version_0" / "checkpoints"
    assert torch.load(checkpoints / "last.ckpt", weights_only=False)["epoch"] == 1
    best = [path for path in checkpoints.glob("*.ckpt") if path.name != "last.ckpt"]
    assert [path.name for path in best] == ["epoch=0-step=9.ckpt"]
