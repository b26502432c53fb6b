"""DivergenceDetector on real Trainers: the stop, skip, rollback and warn actions and the event records."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback, Trainer, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.data import DataLoader
from toy_models import LinearRegression, full_batch_loader, full_batch_loss, noise_regression, weights_of

from lightning_app.callbacks import DivergenceDetector
from lightning_app.callbacks.events import EVENTS_FILE_NAME
from lightning_app.errors import ConfigError


class StateRecorder(Callback):
    """Record the weights and momentum buffers before every step, and the weights at validation start."""

    def __init__(self) -> None:
        self.before_step: dict[int, dict[str, torch.Tensor]] = {}
        self.momentum_before_step: dict[int, list[torch.Tensor]] = {}
        self.validated: list[tuple[int, dict[str, torch.Tensor]]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.before_step[trainer.global_step] = weights_of(pl_module)
        state = trainer.optimizers[0].state
        self.momentum_before_step[trainer.global_step] = [
            state[param]["momentum_buffer"].clone() for param in pl_module.parameters() if param in state
        ]

    def on_validation_start(self, trainer, pl_module) -> None:
        self.validated.append((trainer.global_step, weights_of(pl_module)))


def _read_events(directory: Path) -> list[dict]:
    path = directory / EVENTS_FILE_NAME
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _assert_same(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert actual.keys() == expected.keys()
    for name, value in expected.items():
        torch.testing.assert_close(actual[name], value, rtol=0, atol=0, msg=name)


@pytest.mark.parametrize("interval", [1, 4])
def test_stop_on_nan_keeps_weights_before_step(tmp_path: Path, interval: int) -> None:
    seed_everything(1)
    nan_step = 5
    dataset = noise_regression(256)
    model = LinearRegression(lr=0.05, momentum=0.9, nan_steps=(nan_step,))
    recorder = StateRecorder()
    detector = DivergenceDetector(action="stop", check_every_n_steps=interval)
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "checkpoints", save_last=True)
    trainer = Trainer(
        max_epochs=20,
        default_root_dir=tmp_path,
        logger=TensorBoardLogger(tmp_path, name="", version=""),
        callbacks=[recorder, detector, checkpoint],
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    train_loader = DataLoader(dataset, batch_size=64)
    trainer.fit(model, train_loader, DataLoader(noise_regression(64, seed=1), batch_size=64))

    assert detector.stopped_at == nan_step
    assert nan_step < trainer.global_step <= nan_step + interval
    healthy = recorder.before_step[nan_step]
    _assert_same(weights_of(model), healthy)

    saved = torch.load(tmp_path / "checkpoints" / "last-healthy.ckpt", weights_only=False)
    _assert_same(saved["state_dict"], healthy)
    saved_momentum = [state["momentum_buffer"] for state in saved["optimizer_states"][0]["state"].values()]
    for actual, expected in zip(saved_momentum, recorder.momentum_before_step[nan_step], strict=True):
        torch.testing.assert_close(actual, expected, rtol=0, atol=0)
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    _assert_same(last["state_dict"], healthy)

    for step, weights in recorder.validated:
        assert all(torch.isfinite(value).all() for value in weights.values())
        if step > nan_step:
            _assert_same(weights, healthy)

    events = _read_events(tmp_path)
    assert len(events) == 1
    assert events[0]["step"] == nan_step
    assert events[0]["kind"] == "nonfinite_loss"
    assert events[0]["action"] == "stop"
    assert events[0]["value"] == "nan"
    assert events[0]["batch_size"] == 64
    assert events[0]["lr"] == pytest.approx(0.05)


def test_stop_events_in_tensorboard(tmp_path: Path) -> None:
    model = LinearRegression(lr=0.05, nan_steps=(3,))
    detector = DivergenceDetector(action="stop", check_every_n_steps=2)
    logger = TensorBoardLogger(tmp_path, name="", version="")
    trainer = Trainer(
        max_steps=20,
        logger=logger,
        default_root_dir=tmp_path,
        callbacks=[detector],
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    trainer.fit(model, DataLoader(noise_regression(128), batch_size=32))
    logger.experiment.flush()

    accumulator = EventAccumulator(str(tmp_path))
    accumulator.Reload()
    counts = accumulator.Scalars("divergence/event_count")
    assert [(event.step, event.value) for event in counts] == [(3, 1.0)]
    assert math.isnan(accumulator.Scalars("divergence/nonfinite_loss")[0].value)
    texts = accumulator.Tensors("divergence/events/text_summary")
    assert len(texts) == 1
    assert b"nonfinite_loss" in texts[0].tensor_proto.string_val[0]


@pytest.mark.parametrize(
    ("thresholds", "max_steps_to_detection"),
    [
        ({}, 25),
        # The full-batch thresholds of configs/noise_fullbatch_sgd.yaml.
        ({"warmup_steps": 5, "best_factor": 2.0, "patience": 1}, 15),
    ],
)
def test_lr_one_noise_run_detected_within_few_steps(
    quiet_trainer_kwargs: dict, thresholds: dict, max_steps_to_detection: int
) -> None:
    seed_everything(0)
    dataset = noise_regression()
    model = LinearRegression(lr=1.0)
    start_loss = full_batch_loss(model, dataset)
    detector = DivergenceDetector(action="stop", check_every_n_steps=1, **thresholds)
    trainer = Trainer(max_steps=100, callbacks=[detector], **quiet_trainer_kwargs)
    trainer.fit(model, full_batch_loader(dataset))

    assert detector.stopped_at is not None
    assert detector.stopped_at <= max_steps_to_detection
    assert trainer.global_step == detector.stopped_at + 1
    # The stopped model has the weights the detection step started from: already above the start.
    assert full_batch_loss(model, dataset) > 2 * start_loss


def test_converging_noise_run_raises_no_event(quiet_trainer_kwargs: dict) -> None:
    seed_everything(0)
    model = LinearRegression(lr=0.1)
    detector = DivergenceDetector(action="stop", check_every_n_steps=7)
    trainer = Trainer(max_steps=150, callbacks=[detector], **quiet_trainer_kwargs)
    trainer.fit(model, full_batch_loader(noise_regression()))

    assert detector.events.count == 0
    assert trainer.global_step == 150


def test_rollback_recovers_lr_one_run(quiet_trainer_kwargs: dict) -> None:
    seed_everything(0)
    dataset = noise_regression()
    model = LinearRegression(lr=1.0)
    start_loss = full_batch_loss(model, dataset)
    detector = DivergenceDetector(action="rollback", check_every_n_steps=1, rollback_lr_factor=0.5)
    trainer = Trainer(max_steps=80, callbacks=[detector], **quiet_trainer_kwargs)
    trainer.fit(model, full_batch_loader(dataset))

    final_loss = full_batch_loss(model, dataset)
    assert trainer.global_step == 80
    assert detector.rollbacks == 1
    assert detector.stopped_at is None
    assert math.isfinite(final_loss)
    assert final_loss < start_loss
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.5)


def test_rollback_stops_after_max_rollbacks(tmp_path: Path, quiet_trainer_kwargs: dict) -> None:
    model = LinearRegression(lr=0.05, nan_steps=(2, 4, 6))
    detector = DivergenceDetector(action="rollback", check_every_n_steps=1, max_rollbacks=2)
    trainer = Trainer(max_steps=40, callbacks=[detector], **quiet_trainer_kwargs)
    trainer.fit(model, DataLoader(noise_regression(256), batch_size=32))

    events = _read_events(tmp_path)
    assert [event["action"] for event in events] == ["rollback", "rollback", "stop"]
    assert [event["step"] for event in events] == [2, 4, 6]
    assert detector.stopped_at == 6
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.05 * 0.25)


def test_skip_skips_exactly_bad_steps(tmp_path: Path, quiet_trainer_kwargs: dict) -> None:
    dataset = noise_regression()
    seed_everything(3)
    clean = LinearRegression(lr=0.1, momentum=0.9)
    initial = weights_of(clean)
    Trainer(max_steps=10, **quiet_trainer_kwargs).fit(clean, full_batch_loader(dataset))

    skipped = LinearRegression(lr=0.1, momentum=0.9, nan_steps=(0, 3, 7))
    skipped.load_state_dict(initial)
    detector = DivergenceDetector(action="skip", check_every_n_steps=5)
    Trainer(max_steps=13, callbacks=[detector], **quiet_trainer_kwargs).fit(skipped, full_batch_loader(dataset))

    # Full-batch SGD is deterministic, so 13 steps with 3 skipped equal 10 clean steps.
    _assert_same(weights_of(skipped), weights_of(clean))
    events = _read_events(tmp_path)
    assert [event["step"] for event in events] == [0, 3, 7]
    assert {event["action"] for event in events} == {"skip"}
    assert detector.stopped_at is None


def test_skip_escalates_to_stop(quiet_trainer_kwargs: dict) -> None:
    model = LinearRegression(lr=0.1, nan_steps=(2, 3, 4))
    detector = DivergenceDetector(action="skip", check_every_n_steps=1, max_skips=2, skip_window=10)
    trainer = Trainer(max_steps=30, callbacks=[detector], **quiet_trainer_kwargs)
    trainer.fit(model, full_batch_loader(noise_regression()))

    assert detector.stopped_at == 4
    assert trainer.global_step == 5
    assert all(torch.isfinite(value).all() for value in weights_of(model).values())


def test_warn_changes_nothing(tmp_path: Path, quiet_trainer_kwargs: dict) -> None:
    model = LinearRegression(lr=0.1, nan_steps=(2,), nan_loss_only=True)
    model.nan_steps.add(5)
    detector = DivergenceDetector(action="warn", check_every_n_steps=3)
    trainer = Trainer(max_steps=9, callbacks=[detector], **quiet_trainer_kwargs)
    trainer.fit(model, full_batch_loader(noise_regression()))

    assert trainer.global_step == 9
    assert torch.isfinite(model.net.weight).all()
    events = _read_events(tmp_path)
    assert [(event["step"], event["action"]) for event in events] == [(2, "warn"), (5, "warn")]


def test_warn_reports_lasting_divergence_once(tmp_path: Path, quiet_trainer_kwargs: dict) -> None:
    model = LinearRegression(lr=0.1, nan_steps=(2,))
    detector = DivergenceDetector(action="warn", check_every_n_steps=3)
    trainer = Trainer(max_steps=9, callbacks=[detector], **quiet_trainer_kwargs)
    trainer.fit(model, full_batch_loader(noise_regression()))

    # The NaN gradient of step 2 makes the weights NaN, so every later step is flagged too.
    assert trainer.global_step == 9
    assert not torch.isfinite(model.net.weight).all()
    events = _read_events(tmp_path)
    assert [(event["step"], event["kind"], event["action"]) for event in events] == [(2, "nonfinite_loss", "warn")]


def test_gradient_accumulation_reports_mean_loss(tmp_path: Path, quiet_trainer_kwargs: dict) -> None:
    model = LinearRegression(lr=0.05, nan_steps=(1,))
    detector = DivergenceDetector(action="stop", check_every_n_steps=1)
    trainer = Trainer(max_steps=10, accumulate_grad_batches=2, callbacks=[detector], **quiet_trainer_kwargs)
    trainer.fit(model, DataLoader(noise_regression(256), batch_size=32))

    assert detector.stopped_at == 1
    assert trainer.global_step == 2


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        ({"action": "halt"}, "action is 'halt'"),
        ({"check_every_n_steps": 0}, "check_every_n_steps is 0"),
        ({"best_factor": 1.0}, "best_factor is 1.0"),
        ({"ema_decay": 1.0}, "ema_decay is 1.0"),
        ({"rollback_lr_factor": 0.0}, "rollback_lr_factor is 0.0"),
        ({"patience": 0}, "patience is 0"),
    ],
)
def test_invalid_arguments_raise_config_error(arguments: dict, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        DivergenceDetector(**arguments)
