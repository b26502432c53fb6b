"""DivergenceDetector: per-step divergence checks on the device, with stop, skip, rollback or warn actions."""

from __future__ import annotations

import math
import os
from collections import deque
from typing import Any, Literal

import torch
import torch.distributed as dist
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities.data import extract_batch_size
from torch.optim import Optimizer
from typing_extensions import override

from lightning_app.callbacks.divergence_rules import ROW_FIELDS, RULE_BITS, DivergenceRules, RuleConfig
from lightning_app.callbacks.events import EventLog, HealthEvent
from lightning_app.callbacks.grad_scaler import grad_scaler, scaler_found_inf
from lightning_app.callbacks.norms import total_grad_norm
from lightning_app.callbacks.snapshot import Snapshot, StepGuard
from lightning_app.errors import ConfigError

Action = Literal["stop", "skip", "rollback", "warn"]
HEALTHY_CHECKPOINT_NAME = "last-healthy.ckpt"


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


class DivergenceDetector(Callback):
    """Detect a diverging run every step on the device and stop, skip, roll back or warn.

    Rules, with defaults in brackets:

    - ``nonfinite_loss``: the loss is NaN or inf.
    - ``nonfinite_grad``: the total gradient norm is NaN or inf.
    - ``loss_spike``: the loss is above its running mean by ``spike_sigma`` [6] running standard deviations.
    - ``loss_above_best``: the loss is above ``best_factor`` [10] times the lowest running-mean loss.
    - ``grad_norm_spike``: the total gradient norm is above ``grad_norm_factor`` [10] times its running mean.

    The last three are statistical rules. They start after ``warmup_steps`` [20] and fire only after
    holding for ``patience`` [3] consecutive steps, so that single heavy-tailed losses at batch size 1
    raise no alarm.

    Checks run on the device every step. The host reads their results at most once every
    ``check_every_n_steps`` optimizer steps (default: the trainer's ``log_every_n_steps``), plus once
    when training ends. A longer interval means fewer host-device synchronisations but a later event
    line and, for ``stop`` and ``rollback``, more wasted steps: the weights themselves are safe either
    way, because a flagged step freezes them on the device until the host acts.

    Actions:
        stop: the flagged step's update is undone and every later update is undone until the host reads
            the flag, so the weights stay those from before the flagged step; they are saved to
            ``last-healthy.ckpt`` in the checkpoint directory and ``trainer.should_stop`` is set. Any
            validation and ``last.ckpt`` after that see the same healthy weights.
        skip: the flagged step's update is undone on the device and training goes on; more than
            ``max_skips`` skips within ``skip_window`` steps escalate to ``stop``.
        rollback: model, optimizer and detector state return to the older of the two snapshots kept in
            memory (taken every ``snapshot_every_n_steps`` at healthy checks, and at the start), the
            learning rate is multiplied by ``rollback_lr_factor``, and training goes on with the next
            batches, so the batches since the snapshot are not repeated. After ``max_rollbacks``
            rollbacks the next event stops the run.
        warn: training goes on unchanged; the first step of each run of consecutive flagged steps is
            reported, so a run that stays diverged reports once.

    With 16-bit AMP, steps that the gradient scaler skips for inf/NaN gradients are not divergence;
    a loss scale below ``min_loss_scale`` is reported once. Under DDP the loss and gradient norm are
    averaged across ranks every step (one small all-reduce), so every rank flags the same steps.

    NOTE: the running statistics, skip counts and snapshots are not saved in checkpoints, so a resumed
    run starts them afresh (warm-up included).
    """

    def __init__(
        self,
        action: Action = "stop",
        check_every_n_steps: int | None = None,
        warmup_steps: int = 20,
        spike_sigma: float = 6.0,
        best_factor: float = 10.0,
        grad_norm_factor: float = 10.0,
        ema_decay: float = 0.98,
        patience: int = 3,
        max_skips: int = 5,
        skip_window: int = 100,
        snapshot_every_n_steps: int = 50,
        max_rollbacks: int = 3,
        rollback_lr_factor: float = 0.5,
        min_loss_scale: float = 1.0,
    ) -> None:
        """Configure the rules and the action; see the class docstring for the meaning of each value."""
        super().__init__()
        where = "DivergenceDetector"
        _require(
            action in ("stop", "skip", "rollback", "warn"),
            f"{where}.action is {action!r}; use stop, skip, rollback or warn",
        )
        _require(
            check_every_n_steps is None or check_every_n_steps >= 1,
            f"{where}.check_every_n_steps is {check_every_n_steps}; use an integer >= 1 or null for log_every_n_steps",
        )
        _require(warmup_steps >= 0, f"{where}.warmup_steps is {warmup_steps}; use an integer >= 0")
        _require(spike_sigma > 0, f"{where}.spike_sigma is {spike_sigma}; use a positive number such as 6")
        _require(best_factor > 1, f"{where}.best_factor is {best_factor}; use a number above 1 such as 10")
        _require(
            grad_norm_factor > 1, f"{where}.grad_norm_factor is {grad_norm_factor}; use a number above 1 such as 10"
        )
        _require(0 < ema_decay < 1, f"{where}.ema_decay is {ema_decay}; use a number between 0 and 1 such as 0.98")
        _require(patience >= 1, f"{where}.patience is {patience}; use an integer >= 1")
        _require(
            max_skips >= 0 and skip_window >= 1,
            f"{where}.max_skips={max_skips}, skip_window={skip_window}; use max_skips >= 0 and skip_window >= 1",
        )
        _require(
            snapshot_every_n_steps >= 1,
            f"{where}.snapshot_every_n_steps is {snapshot_every_n_steps}; use an integer >= 1",
        )
        _require(max_rollbacks >= 0, f"{where}.max_rollbacks is {max_rollbacks}; use an integer >= 0")
        _require(
            0 < rollback_lr_factor <= 1,
            f"{where}.rollback_lr_factor is {rollback_lr_factor}; use a number in (0, 1] such as 0.5",
        )
        self.action = action
        self.check_every_n_steps = check_every_n_steps
        self.rule_config = RuleConfig(warmup_steps, spike_sigma, best_factor, grad_norm_factor, ema_decay, patience)
        self.max_skips = max_skips
        self.skip_window = skip_window
        self.snapshot_every_n_steps = snapshot_every_n_steps
        self.max_rollbacks = max_rollbacks
        self.rollback_lr_factor = rollback_lr_factor
        self.min_loss_scale = min_loss_scale

        self.events = EventLog("divergence")
        self.rollbacks = 0
        self.stopped_at: int | None = None
        self._stopped = False
        self._interval = 1
        self._rules: DivergenceRules | None = None
        self._guard = StepGuard()
        self._snapshots: deque[Snapshot] = deque(maxlen=2)
        self._skip_steps: deque[int] = deque()
        self._loss_scale_reported = False
        self._warn_episode = False
        self._reset_pending()

    def _reset_pending(self) -> None:
        self._rows: list[torch.Tensor] = []
        self._row_info: list[tuple[int, int, float | None, int | None]] = []
        self._loss_sum: torch.Tensor | None = None
        self._halted: torch.Tensor | None = None
        self._mask: torch.Tensor | None = None
        self._batch_size: int | None = None
        self._guard_saved = False
        self._stepped = False

    @property
    def _guards_steps(self) -> bool:
        return self.action != "warn"

    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        if not pl_module.automatic_optimization:
            raise ConfigError(
                "DivergenceDetector supports automatic optimization only; remove it or set automatic_optimization = True"
            )
        self._interval = self.check_every_n_steps or max(1, trainer.log_every_n_steps)
        self.events.attach(trainer)

    @override
    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._rules = DivergenceRules(self.rule_config, pl_module.device)
        self._reset_pending()
        self._snapshots.clear()
        self._stopped = False
        self._warn_episode = False
        self.stopped_at = None
        if self.action == "rollback":
            self._take_snapshot(trainer, pl_module)

    @override
    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        self._batch_size = extract_batch_size(batch)
        # Save before the forward pass so that BatchNorm statistics of a flagged step are undone too.
        if self._guards_steps and not self._guard_saved:
            self._guard.save(pl_module, trainer.optimizers)
            self._guard_saved = True

    @override
    def on_before_backward(self, trainer: Trainer, pl_module: LightningModule, loss: torch.Tensor) -> None:
        # Lightning passes the loss divided by accumulate_grad_batches and, with fp16 AMP, multiplied by the
        # loss scale. So the sum over micro-batches, divided by the scale, is the mean loss of the step.
        value = loss.detach().float()
        scaler = grad_scaler(trainer)
        if scaler is not None:
            value = value / scaler._scale.float()
        self._loss_sum = value if self._loss_sum is None else self._loss_sum + value

    @override
    def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule, optimizer: Optimizer) -> None:
        assert self._rules is not None
        device = pl_module.device
        loss = self._loss_sum if self._loss_sum is not None else torch.full((), float("nan"), device=device)
        grad_norm = total_grad_norm(pl_module.parameters(), device)
        scaler = grad_scaler(trainer)
        grad_checked = torch.ones((), dtype=torch.bool, device=device)
        loss_scale = torch.full((), float("nan"), device=device)
        if scaler is not None:
            grad_checked = ~scaler_found_inf(scaler, optimizer, device)
            loss_scale = scaler._scale.float().reshape(())

        if trainer.world_size > 1 and dist.is_available() and dist.is_initialized():
            # Average loss and norm over ranks so every rank evaluates identical rules (NaN spreads).
            reduced = torch.stack([loss, grad_norm.float(), (~grad_checked).float()])
            dist.all_reduce(reduced)
            loss, grad_norm = reduced[0] / trainer.world_size, reduced[1] / trainer.world_size
            grad_checked = reduced[2] == 0

        row = self._rules.update(loss, grad_norm, grad_checked)
        self._rows.append(torch.cat([row, loss_scale.reshape(1)]))
        lr = optimizer.param_groups[0]["lr"]
        self._row_info.append(
            (trainer.global_step, trainer.current_epoch, lr if isinstance(lr, float) else None, self._batch_size)
        )

        flagged = row[0] > 0
        if self._stopped:
            self._mask = torch.ones((), dtype=torch.bool, device=device)
        elif self.action == "skip":
            self._mask = flagged
        elif self._guards_steps:
            self._halted = flagged if self._halted is None else self._halted | flagged
            self._mask = self._halted
        self._loss_sum = None
        self._stepped = True

    @override
    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not self._stepped:
            return  # inside a gradient-accumulation window: no optimizer step yet
        if self._mask is not None:
            self._guard.undo_if(self._mask, pl_module, trainer.optimizers)
            self._mask = None
        self._guard_saved = False
        self._stepped = False
        if len(self._rows) >= self._interval:
            self._check(trainer, pl_module)

    @override
    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._rows:
            self._check(trainer, pl_module)

    def _check(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Read the pending rows in one host transfer and act on the first flagged step."""
        rows = torch.stack(self._rows).tolist()
        info = self._row_info
        self._rows, self._row_info = [], []
        self._report_loss_scale(trainer, rows, info)
        if self._stopped:
            return  # updates stay undone; the stop was reported once

        for values, (step, epoch, lr, batch_size) in zip(rows, info):
            flags = int(values[0])
            in_episode = self._warn_episode
            self._warn_episode = flags != 0
            if flags == 0:
                continue
            kind, value, threshold = _describe(flags, values)
            event = HealthEvent(step, epoch, kind, value, threshold, lr, batch_size, self.action)
            if self.action == "warn":
                # A run that stays diverged flags every step; one event per run of flagged steps.
                if not in_episode:
                    event.detail = (
                        "training goes on unchanged; the following consecutive flagged steps are not reported"
                    )
                    self.events.emit(trainer, event)
            elif self.action == "skip":
                self._skip(trainer, pl_module, event)
            elif self.action == "rollback":
                self._rollback(trainer, pl_module, event)
                return
            else:
                self._stop(trainer, pl_module, event)
                return
            if self._stopped:
                return

        if self.action == "rollback" and not trainer.should_stop:
            newest = self._snapshots[-1].step if self._snapshots else -math.inf
            if trainer.global_step - newest >= self.snapshot_every_n_steps:
                self._take_snapshot(trainer, pl_module)

    def _skip(self, trainer: Trainer, pl_module: LightningModule, event: HealthEvent) -> None:
        self._skip_steps.append(event.step)
        while self._skip_steps and self._skip_steps[0] <= event.step - self.skip_window:
            self._skip_steps.popleft()
        if len(self._skip_steps) > self.max_skips:
            event.action = "stop"
            event.detail = (
                f"{len(self._skip_steps)} skips within {self.skip_window} steps exceed max_skips={self.max_skips}"
            )
            self._stop(
                trainer,
                pl_module,
                event,
                weights=f"the weights of step {trainer.global_step}, without the skipped updates,",
            )
            return
        event.detail = "the update of this step was undone; training goes on"
        self.events.emit(trainer, event)

    def _stop(self, trainer: Trainer, pl_module: LightningModule, event: HealthEvent, weights: str = "") -> None:
        """Save the current weights to the healthy checkpoint and request the stop.

        Under ``stop`` and ``rollback`` the current weights are those from before ``event.step``; under
        ``skip``, the caller names them in ``weights``.
        """
        # Every later update is undone too, for example while min_steps delays the stop.
        self._stopped = True
        path = self._healthy_checkpoint_path(trainer)
        trainer.save_checkpoint(path)
        trainer.should_stop = True
        self.stopped_at = event.step
        event.action = "stop"
        prefix = f"{event.detail}; " if event.detail else ""
        weights = weights or f"the weights from before step {event.step}"
        event.detail = f"{prefix}stopping; {weights} are saved to {path}"
        event.extra["checkpoint"] = path
        self.events.emit(trainer, event)

    def _rollback(self, trainer: Trainer, pl_module: LightningModule, event: HealthEvent) -> None:
        if self.rollbacks >= self.max_rollbacks or not self._snapshots:
            event.detail = f"max_rollbacks={self.max_rollbacks} reached"
            self._stop(trainer, pl_module, event)
            return
        assert self._rules is not None
        snapshot = self._snapshots[0]
        current_lrs = [[group["lr"] for group in optimizer.param_groups] for optimizer in trainer.optimizers]
        snapshot.restore(pl_module, trainer.optimizers)
        self._rules.load_state(snapshot.extra["rules"])
        new_lrs = _scale_learning_rates(trainer, current_lrs, self.rollback_lr_factor)
        self._snapshots.clear()
        self._snapshots.append(snapshot)
        self._halted = None
        self.rollbacks += 1
        event.action = "rollback"
        event.detail = (
            f"restored the state of step {snapshot.step}, learning rate now {new_lrs[0]:.4g} "
            f"(rollback {self.rollbacks} of {self.max_rollbacks}); the batches since then are not repeated"
        )
        event.extra.update(restored_step=snapshot.step, new_lr=new_lrs[0], rollback=self.rollbacks)
        self.events.emit(trainer, event)

    def _take_snapshot(self, trainer: Trainer, pl_module: LightningModule) -> None:
        assert self._rules is not None
        extra = {"rules": self._rules.state()}
        self._snapshots.append(Snapshot.take(trainer.global_step, pl_module, trainer.optimizers, extra))

    def _healthy_checkpoint_path(self, trainer: Trainer) -> str:
        checkpoint = trainer.checkpoint_callback
        directory = getattr(checkpoint, "dirpath", None) or os.path.join(
            trainer.log_dir or trainer.default_root_dir, "checkpoints"
        )
        return os.path.join(directory, HEALTHY_CHECKPOINT_NAME)

    def _report_loss_scale(
        self, trainer: Trainer, rows: list[list[float]], info: list[tuple[int, int, float | None, int | None]]
    ) -> None:
        if self._loss_scale_reported:
            return
        scale_column = ROW_FIELDS.index("loss_scale")
        for values, (step, epoch, lr, batch_size) in zip(rows, info):
            scale = values[scale_column]
            if math.isfinite(scale) and scale < self.min_loss_scale:
                self._loss_scale_reported = True
                detail = "the fp16 gradient scaler keeps finding inf/NaN gradients; consider bf16-mixed or a lower learning rate"
                event = HealthEvent(
                    step, epoch, "loss_scale_collapse", scale, self.min_loss_scale, lr, batch_size, "warn", detail
                )
                self.events.emit(trainer, event)
                return


def _describe(flags: int, values: list[float]) -> tuple[str, float, float]:
    """Return the name, value and threshold of the highest-priority rule in ``flags``."""
    column = {name: index for index, name in enumerate(ROW_FIELDS)}
    sources = {
        "nonfinite_loss": ("loss", None),
        "nonfinite_grad": ("grad_norm", None),
        "loss_spike": ("loss", "spike_threshold"),
        "loss_above_best": ("loss", "best_threshold"),
        "grad_norm_spike": ("grad_norm", "grad_norm_threshold"),
    }
    for name, bit in RULE_BITS.items():
        if flags & bit:
            value_field, threshold_field = sources[name]
            threshold = values[column[threshold_field]] if threshold_field else math.nan
            return name, values[column[value_field]], threshold
    raise ValueError(f"no rule bit set in flags {flags}")


def _scale_learning_rates(trainer: Trainer, current_lrs: list[list[float]], factor: float) -> list[float]:
    """Set each group's learning rate to ``factor`` times its value before the rollback; scale schedulers too."""
    new_lrs: list[float] = []
    for optimizer, lrs in zip(trainer.optimizers, current_lrs):
        for group, lr in zip(optimizer.param_groups, lrs):
            group["lr"] = lr * factor
            if "initial_lr" in group:
                group["initial_lr"] *= factor
            new_lrs.append(group["lr"])
    for config in trainer.lr_scheduler_configs:
        scheduler = config.scheduler
        if hasattr(scheduler, "base_lrs"):
            scheduler.base_lrs = [lr * factor for lr in scheduler.base_lrs]
    return new_lrs
