"""Training-health events: one log line, TensorBoard scalars and text, and a JSON Lines audit file."""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import asdict, dataclass, field
from typing import Any

from lightning.pytorch import Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only

log = logging.getLogger(__name__)

#: Name of the audit file written into the run's log directory.
EVENTS_FILE_NAME = "health_events.jsonl"


@dataclass
class HealthEvent:
    """One detection and the action taken for it.

    Attributes:
        step: optimizer step (0-based, as ``trainer.global_step`` before the step) where it happened.
        epoch: epoch of that step.
        kind: rule that fired, for example ``nonfinite_loss`` or ``loss_spike``.
        value: the measured value (loss, gradient norm or loss scale).
        threshold: the limit the value broke; NaN where the rule has none.
        lr: learning rate of the first parameter group at that step.
        batch_size: samples in the step's last batch, as Lightning extracts it.
        action: what the detector did: ``stop``, ``skip``, ``rollback`` or ``warn``.
        detail: the consequence in words, for example which checkpoint contains the healthy weights.
        extra: machine-readable details of the action (restored step, new learning rate, paths).
    """

    step: int
    epoch: int
    kind: str
    value: float
    threshold: float
    lr: float | None
    batch_size: int | None
    action: str
    detail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        """Format the event as one log line."""
        lr = "unknown" if self.lr is None else f"{self.lr:.4g}"
        text = (
            f"training-health event at step {self.step} (epoch {self.epoch}): {self.kind} value={self.value:.6g} "
            f"threshold={self.threshold:.6g} lr={lr} batch_size={self.batch_size} action={self.action}"
        )
        return f"{text}: {self.detail}" if self.detail else text

    def to_json(self) -> str:
        """Serialise the event; non-finite numbers become the strings "nan", "inf" and "-inf"."""
        record = asdict(self)
        for key in ("value", "threshold"):
            number = record[key]
            if not math.isfinite(number):
                record[key] = str(number)
        return json.dumps(record, sort_keys=True)


class EventLog:
    """Writes events to the Python log, every attached logger and ``<log_dir>/health_events.jsonl``.

    Only global rank zero writes; other ranks count events so that every rank returns the same totals.
    """

    def __init__(self, source: str, max_log_lines: int = 20) -> None:
        """Create a log for events from ``source`` (the callback name used in TensorBoard tags)."""
        self.source = source
        self.max_log_lines = max_log_lines
        self.path: str | None = None
        self.count = 0

    def attach(self, trainer: Trainer) -> None:
        """Resolve the audit file path from the trainer; call on every rank because ``log_dir`` broadcasts."""
        log_dir = trainer.log_dir or trainer.default_root_dir
        self.path = os.path.join(log_dir, EVENTS_FILE_NAME)

    def emit(self, trainer: Trainer, event: HealthEvent) -> None:
        """Record one event everywhere it belongs."""
        self.count += 1
        self._write(trainer, event)

    @rank_zero_only
    def _write(self, trainer: Trainer, event: HealthEvent) -> None:
        if self.count <= self.max_log_lines:
            log.warning(event.line())
        elif self.count == self.max_log_lines + 1:
            log.warning("further training-health event lines are not printed; all events are in %s", self.path)

        if self.path is not None:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as file:
                file.write(event.to_json() + "\n")

        metrics = {f"{self.source}/event_count": float(self.count), f"{self.source}/{event.kind}": event.value}
        if math.isfinite(event.threshold):
            metrics[f"{self.source}/{event.kind}_threshold"] = event.threshold
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=event.step)
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_text(f"{self.source}/events", event.line(), global_step=event.step)
