"""BatchConsistencyCheck: checks once, before the first step, that batch training equals per-sample training."""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import nn
from typing_extensions import override

from lightning_app.callbacks.batch_probe import (
    ProbeResult,
    batch_size_of,
    cross_sample_curvature,
    detached_copy,
    map_batch,
    probe,
    set_eval,
)
from lightning_app.errors import ConfigError

_DROPOUT_TYPES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)
_BATCH_NORM_TYPES = (nn.modules.batchnorm._BatchNorm,)


class BatchConsistencyError(ConfigError):
    """The training loss of a batch is not the mean of independent per-sample losses."""


class BatchConsistencyCheck(Callback):
    """Check that a batch's loss and gradient are the means of its samples' own losses and gradients.

    The check runs once, in ``on_train_batch_start`` of the first training batch of ``fit``, before any
    optimizer step. It calls ``training_step`` on a copy of the module, once for the first
    ``max_samples`` samples of that batch together and once for each sample alone, in float32 with
    dropout off. It works for any LightningModule whose ``training_step`` returns the loss (a tensor or a
    dict with ``"loss"``) and whose batch contains tensors with the batch size as leading dimension. When
    the first batch has a single sample, the samples come from the first indices of the training dataset.

    It reports:

    - a batch loss that is not the mean of the per-sample losses: a summed loss (the ratio equals the
      batch size, so the step grows with the batch size) or a target that broadcasts against the output;
    - a batch gradient that is not the mean of the per-sample gradients;
    - samples that are not independent: the batch loss's gradient with respect to one sample's inputs
      must come from that sample's own loss alone.

    BatchNorm layers in training mode normalise each sample with its batch's statistics, which mixes
    samples by design; the checks run with them in eval mode, and a separate warning explains and
    measures the difference. ``mode="fail"`` raises :class:`BatchConsistencyError` for a failed check;
    ``mode="warn"`` only warns. The run's data order, RNG state, weights and metrics are not changed.
    """

    def __init__(
        self, mode: Literal["warn", "fail"] = "warn", max_samples: int = 8, rtol: float = 1e-3, enabled: bool = True
    ) -> None:
        """Configure the mode, the samples compared (at least 2) and the relative tolerance of each comparison."""
        super().__init__()
        if mode not in ("warn", "fail"):
            raise ConfigError(f"BatchConsistencyCheck.mode is {mode!r}; use warn or fail")
        if max_samples < 2:
            raise ConfigError(f"BatchConsistencyCheck.max_samples is {max_samples}; use an integer >= 2")
        if not 0 < rtol < 1:
            raise ConfigError(f"BatchConsistencyCheck.rtol is {rtol}; use a number between 0 and 1 such as 1e-3")
        self.mode = mode
        self.max_samples = max_samples
        self.rtol = rtol
        self.enabled = enabled
        self.findings: list[str] = []
        self.result: ProbeResult | None = None
        self._done = False

    @override
    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._done = not self.enabled

    @override
    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        if self._done:
            return
        self._done = True
        probe_batch = self._probe_batch(trainer, batch)
        if probe_batch is None:
            rank_zero_warn(
                "batch-consistency check skipped: the batches hold one sample and the training dataset cannot be indexed"
            )
            return
        failed = self._run(pl_module, *probe_batch)
        failed = trainer.strategy.reduce_boolean_decision(failed, all=False)
        if failed and self.mode == "fail":
            raise BatchConsistencyError(
                "batch-consistency check failed (set mode: warn to train anyway): " + " ".join(self.findings)
            )

    def _probe_batch(self, trainer: Trainer, batch: Any) -> tuple[Any, int] | None:
        size = batch_size_of(batch)
        if size is not None and size >= 2:
            count = min(size, self.max_samples)
            return map_batch(batch, size, lambda tensor: tensor[:count]), count
        # Batches of one sample: fetch the first dataset indices the way DataLoader does.
        loader = trainer.train_dataloader
        dataset = getattr(loader, "dataset", None)
        if dataset is None or not hasattr(dataset, "__len__") or len(dataset) < 2:
            return None
        indices = list(range(min(len(dataset), self.max_samples)))
        getitems = getattr(dataset, "__getitems__", None)
        samples = getitems(indices) if getitems else [dataset[index] for index in indices]
        collate = getattr(loader, "collate_fn", None)
        fetched = collate(samples) if collate is not None else samples
        fetched = trainer.strategy.batch_to_device(fetched)
        size = batch_size_of(fetched)
        return (fetched, size) if size is not None and size >= 2 else None

    def _run(self, pl_module: LightningModule, batch: Any, size: int) -> bool:
        clone = detached_copy(pl_module)
        clone.train()
        set_eval(clone, _DROPOUT_TYPES)
        batch_norms = [
            module for module in clone.modules() if isinstance(module, _BATCH_NORM_TYPES) and module.training
        ]
        devices = [pl_module.device] if pl_module.device.type == "cuda" else []
        with (
            torch.random.fork_rng(devices=devices),
            torch.enable_grad(),
            torch.autocast(pl_module.device.type, enabled=False),
        ):
            curvature = cross_sample_curvature(clone, batch, size) if batch_norms else math.nan
            set_eval(clone, _BATCH_NORM_TYPES)
            result = probe(clone, batch, size)
        self.result = result
        self.findings = []
        if result is None:
            rank_zero_warn("batch-consistency check skipped: training_step did not return a scalar loss tensor")
            return False

        failed = self._judge(result)
        if batch_norms:
            measured = (
                ""
                if math.isnan(curvature)
                else f" (measured: sample 0's input gradient changes with the other samples' inputs at {curvature:.3g} times its own response)"
            )
            rank_zero_warn(
                f"batch-consistency check: the model has {len(batch_norms)} BatchNorm layer(s) in training mode. They "
                "normalise each sample with the mean and variance of its batch, so a sample's output depends on "
                "its batch mates and batch training differs from per-sample training by design"
                f"{measured}. Batches of one sample cannot be normalised this way. The checks below ran with "
                "BatchNorm in eval mode; use LayerNorm, or larger batches, if this difference matters."
            )
        summary = (
            f"batch-consistency check on {result.num_samples} samples: batch loss {result.batch_loss:.6g}, mean per-sample "
            f"loss {result.mean_sample_loss:.6g} (relative error {result.loss_error:.2g}), gradient relative error "
            f"{result.grad_error:.2g}, sample-mixing relative error {result.mixing_error:.2g}"
        )
        if failed:
            message = summary + ". " + " ".join(self.findings)
            if self.mode == "warn":
                rank_zero_warn(message)
        else:
            rank_zero_info(summary + "; all within rtol " + f"{self.rtol:g}")
        return failed

    def _judge(self, result: ProbeResult) -> bool:
        size = result.num_samples
        if result.loss_error > self.rtol:
            ratio = result.batch_loss / result.mean_sample_loss if result.mean_sample_loss else math.nan
            if abs(ratio - size) <= self.rtol * size:
                self.findings.append(
                    f"The batch loss is {ratio:.4g} times the mean per-sample loss, the batch size: the loss is summed "
                    "over the batch (reduction='sum'), so the gradient and the effective learning rate grow with the "
                    "batch size. Use reduction='mean' or divide the learning rate by the batch size."
                )
            else:
                self.findings.append(
                    f"The batch loss is not the mean of the per-sample losses (ratio {ratio:.4g}). A common cause is a "
                    "target of shape (B,) compared with an output of shape (B, 1): the loss broadcasts to (B, B), "
                    "pairs every output with every target and the model learns only the mean target. Make both "
                    "shapes equal, for example with output.squeeze(-1)."
                )
        if result.grad_error > self.rtol:
            self.findings.append(
                f"The batch gradient differs from the mean of the per-sample gradients (relative error "
                f"{result.grad_error:.3g}), so a batch step is not the average of per-sample steps."
            )
        if result.mixing_error > self.rtol:
            self.findings.append(
                f"Samples are not independent: the gradient of the batch loss with respect to one sample's inputs "
                f"is not explained by that sample's own loss (relative error {result.mixing_error:.3g}). A layer or "
                "the loss code mixes samples, for example statistics over the batch dimension such as "
                "x - x.mean(0), or a reduction over the wrong dimension."
            )
        return bool(self.findings)
