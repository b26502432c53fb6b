"""GradNormMonitor on real Trainers, and the host transfers of the monitoring callbacks."""

from __future__ import annotations

import functools
import math
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback, Trainer, seed_everything
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.plugins.precision import MixedPrecision
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.data import DataLoader
from toy_models import BatchNormRegression, LinearRegression, noise_regression

from lightning_app.callbacks import DivergenceDetector, GradNormMonitor
from lightning_app.errors import ConfigError


class ClipNormRecorder(Callback):
    """Record what ``clip_grad_norm_`` returns for copies of the gradients, and the weights, at each step."""

    def __init__(self) -> None:
        self.clip_norms: dict[int, float] = {}
        self.grad_norms: dict[int, dict[str, float]] = {}
        self.weight_norms: dict[int, dict[str, float]] = {}

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        step = trainer.global_step
        copies = [param.detach().clone().requires_grad_() for param in pl_module.parameters()]
        for copy, param in zip(copies, pl_module.parameters()):
            copy.grad = param.grad.detach().clone()
        self.clip_norms[step] = float(torch.nn.utils.clip_grad_norm_(copies, max_norm=math.inf))
        self.grad_norms[step] = {name: float(param.grad.norm()) for name, param in pl_module.named_parameters()}
        self.weight_norms[step] = {name: float(param.norm()) for name, param in pl_module.named_parameters()}


def _scalars(log_dir: Path) -> dict[str, dict[int, float]]:
    accumulator = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    accumulator.Reload()
    return {
        tag: {event.step: event.value for event in accumulator.Scalars(tag)} for tag in accumulator.Tags()["scalars"]
    }


def test_logged_total_equals_clip_grad_norm(tmp_path: Path) -> None:
    seed_everything(0)
    lr = 0.05
    recorder = ClipNormRecorder()
    logger = TensorBoardLogger(tmp_path, name="", version="")
    trainer = Trainer(
        max_steps=12,
        logger=logger,
        callbacks=[GradNormMonitor(every_n_steps=4), recorder],
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    trainer.fit(LinearRegression(lr=lr), DataLoader(noise_regression(256), batch_size=32))
    logger.experiment.flush()
    scalars = _scalars(tmp_path)

    assert sorted(scalars["norms/grad_total"]) == [0, 4, 8]
    for step, value in scalars["norms/grad_total"].items():
        assert value == pytest.approx(recorder.clip_norms[step], rel=1e-6)
    for name in ("net.weight", "net.bias"):
        for step in (0, 4, 8):
            grad_norm = recorder.grad_norms[step][name]
            weight_norm = recorder.weight_norms[step][name]
            assert scalars[f"norms/grad/{name}"][step] == pytest.approx(grad_norm, rel=1e-6)
            assert scalars[f"norms/weight/{name}"][step] == pytest.approx(weight_norm, rel=1e-6)
            # Plain SGD applies -lr * grad, so the update-to-weight ratio is lr * |grad| / |weight|.
            assert scalars[f"norms/update_ratio/{name}"][step] == pytest.approx(lr * grad_norm / weight_norm, rel=1e-4)


def test_monitors_run_under_bf16_mixed(tmp_path: Path) -> None:
    seed_everything(0)
    logger = TensorBoardLogger(tmp_path, name="", version="")
    detector = DivergenceDetector(check_every_n_steps=5)
    trainer = Trainer(
        max_steps=20,
        precision="bf16-mixed",
        logger=logger,
        callbacks=[GradNormMonitor(every_n_steps=5), detector],
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    trainer.fit(BatchNormRegression(lr=0.05), DataLoader(noise_regression(512), batch_size=32))
    logger.experiment.flush()
    scalars = _scalars(tmp_path)

    assert detector.events.count == 0
    assert sorted(scalars["norms/grad_total"]) == [0, 5, 10, 15]
    assert all(math.isfinite(value) and value > 0 for value in scalars["norms/grad_total"].values())
    assert "norms/update_ratio/hidden.1.weight" in scalars


def test_fp16_scaler_skips_are_not_divergence(tmp_path: Path) -> None:
    class InfGradients(LinearRegression):
        def on_after_backward(self) -> None:
            if self.global_step < 25:
                self.net.weight.grad.fill_(float("inf"))

    model = InfGradients(lr=0.05)
    detector = DivergenceDetector(action="stop", check_every_n_steps=5, min_loss_scale=1.0)
    plugin = MixedPrecision("16-mixed", "cpu", torch.amp.GradScaler("cpu", init_scale=2.0**10))
    trainer = Trainer(
        max_steps=35,
        plugins=[plugin],
        logger=False,
        enable_checkpointing=False,
        default_root_dir=tmp_path,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[detector],
    )
    initial = model.net.weight.detach().clone()
    trainer.fit(model, DataLoader(noise_regression(256), batch_size=32))

    assert trainer.global_step == 35
    assert detector.stopped_at is None
    assert torch.isfinite(model.net.weight).all()
    assert not torch.equal(model.net.weight, initial)
    assert detector.events.count == 1
    lines = (tmp_path / "health_events.jsonl").read_text().splitlines()
    assert '"kind": "loss_scale_collapse"' in lines[0]


_TRANSFER_METHODS = ("item", "cpu", "tolist", "numpy", "__bool__", "__float__", "__int__", "__index__")


class _TransferCounter:
    """Count host-reading tensor methods called while a wrapped callback hook runs."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.active = False
        self.calls: list[str] = []
        for name in _TRANSFER_METHODS:
            original = getattr(torch.Tensor, name)
            monkeypatch.setattr(torch.Tensor, name, self._counting(name, original))

    def _counting(self, name, original):
        @functools.wraps(original)
        def wrapper(tensor, *args, **kwargs):
            if self.active:
                self.calls.append(name)
            return original(tensor, *args, **kwargs)

        return wrapper

    def watch(self, callback: Callback, monkeypatch: pytest.MonkeyPatch) -> None:
        for hook in (
            "on_train_batch_start",
            "on_before_backward",
            "on_before_optimizer_step",
            "on_train_batch_end",
            "on_train_end",
        ):
            original = getattr(callback, hook)

            def wrapped(*args, _original=original, **kwargs):
                self.active = True
                try:
                    return _original(*args, **kwargs)
                finally:
                    self.active = False

            monkeypatch.setattr(callback, hook, wrapped)


@pytest.mark.parametrize("action", ["stop", "skip", "rollback", "warn"])
def test_host_transfers_at_most_one_per_interval(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, action: str) -> None:
    seed_everything(0)
    interval, steps = 10, 40
    counter = _TransferCounter(monkeypatch)
    detector = DivergenceDetector(action=action, check_every_n_steps=interval)
    monitor = GradNormMonitor(every_n_steps=interval)
    counter.watch(detector, monkeypatch)
    counter.watch(monitor, monkeypatch)
    logger = TensorBoardLogger(tmp_path, name="", version="")
    trainer = Trainer(
        max_steps=steps,
        logger=logger,
        callbacks=[detector, monitor],
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    trainer.fit(LinearRegression(lr=0.05, momentum=0.9), DataLoader(noise_regression(512), batch_size=16))

    assert trainer.global_step == steps
    # One read per interval for each callback, and no final read because the last interval was complete.
    assert counter.calls == ["tolist"] * (2 * steps // interval)


def test_grad_norm_monitor_rejects_bad_interval() -> None:
    with pytest.raises(ConfigError, match="every_n_steps is 0"):
        GradNormMonitor(every_n_steps=0)
