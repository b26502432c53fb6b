"""The LightningModule: a linear model or MLP for regression or classification on tabular data."""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.loggers import TensorBoardLogger
from typing_extensions import override

from lightning_app.errors import ConfigError
from lightning_app.metrics import StageMetrics, confusion_image, confusion_markdown
from lightning_app.network import Activation, Norm, build_network

LossName = Literal["mse", "huber", "cross_entropy"]


def _check_shapes(outputs: torch.Tensor, targets: torch.Tensor, task: str) -> None:
    # A (N,) target against an (N, 1) output broadcasts an MSE to (N, N) without an error, so the
    # model learns only the target mean. Comparing shapes costs no host-device sync.
    if task == "regression":
        if outputs.shape != targets.shape:
            raise ValueError(
                f"prediction shape {tuple(outputs.shape)} does not match target shape {tuple(targets.shape)}; "
                "both must be (batch,), so squeeze the model output or the target explicitly"
            )
    elif outputs.ndim != 2 or targets.shape != outputs.shape[:1]:
        raise ValueError(
            f"logits shape {tuple(outputs.shape)} and target shape {tuple(targets.shape)} do not fit; "
            "expected (batch, classes) logits and (batch,) class ids"
        )


class TabularModel(LightningModule):
    """Linear model (``hidden_sizes: []``) or MLP trained with a mean-reduced loss.

    The datamodule supplies ``num_features``, ``num_outputs``, ``task``, the target scaling and the
    class counts through the CLI's argument links, so configs never repeat them.

    Args:
        num_features: input width.
        num_outputs: 1 for regression, the class count for classification (binary uses 2 logits).
        task: "regression", "binary" or "multiclass".
        hidden_sizes: widths of the hidden layers; empty for a linear model.
        activation: hidden activation.
        dropout: dropout probability after each hidden activation.
        norm: optional "batch" or "layer" normalisation in each hidden block.
        loss: "mse" or "huber" for regression, "cross_entropy" for classification; None picks
            "mse" or "cross_entropy" from the task.
        huber_delta: threshold of the Huber loss, in standardised target units.
        class_weights: cross-entropy weight per class, "balanced" for n / (C * n_c), or None.
        class_counts: training rows per class, used by ``class_weights: balanced``.
        class_names: class labels used in metric names and the confusion matrix.
        target_mean, target_std: how the datamodule scaled a regression target; metrics and
            predictions are reported in the original units.
        log_train_metrics: also update the accuracy or MSE metrics on training batches, which costs a
            few kernel launches per step.
        optimizer: optimizer factory, for example ``torch.optim.SGD`` with ``lr``.
        lr_scheduler: optional learning-rate scheduler factory.
    """

    def __init__(
        self,
        num_features: int = 1,
        num_outputs: int = 1,
        task: str = "regression",
        hidden_sizes: list[int] | None = None,
        activation: Activation = "relu",
        dropout: float = 0.0,
        norm: Norm | None = None,
        loss: LossName | None = None,
        huber_delta: float = 1.0,
        class_weights: list[float] | Literal["balanced"] | None = None,
        class_counts: list[int] | None = None,
        class_names: list[str] | None = None,
        target_mean: float = 0.0,
        target_std: float = 1.0,
        log_train_metrics: bool = False,
        optimizer: OptimizerCallable = torch.optim.SGD,
        lr_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["optimizer", "lr_scheduler"])
        self.task = task
        self.loss_name = loss or ("mse" if task == "regression" else "cross_entropy")
        self._check_loss_fits_task()
        self.net = build_network(num_features, num_outputs, list(hidden_sizes or []), activation, dropout, norm)
        self.optimizer = optimizer
        self.lr_scheduler = lr_scheduler
        self.register_buffer("class_weight", self._class_weight_tensor(class_weights, class_counts, num_outputs))

        num_classes = 0 if task == "regression" else num_outputs
        self.train_metrics = StageMetrics(task, num_classes, class_names)
        self.val_metrics = StageMetrics(task, num_classes, class_names)
        self.test_metrics = StageMetrics(task, num_classes, class_names)
        self._train_loss_sum: torch.Tensor | None = None
        self._train_rows = 0
        self._in_train_batch = False

    def _check_loss_fits_task(self) -> None:
        if self.task not in ("regression", "binary", "multiclass"):
            raise ConfigError(f"model.task is {self.task!r}, expected regression, binary or multiclass")
        regression_loss = self.loss_name in ("mse", "huber")
        if regression_loss != (self.task == "regression"):
            raise ConfigError(
                f"model.loss {self.loss_name!r} does not fit task {self.task!r}; use mse or huber for "
                "regression and cross_entropy for classification"
            )

    def _class_weight_tensor(
        self, class_weights: list[float] | str | None, class_counts: list[int] | None, num_outputs: int
    ) -> torch.Tensor | None:
        if class_weights is None:
            return None
        if self.task == "regression":
            raise ConfigError("model.class_weights is set but the task is regression; remove it")
        if class_weights == "balanced":
            if not class_counts:
                raise ConfigError(
                    "model.class_weights is 'balanced' but model.class_counts is empty; train through the CLI, "
                    "which links the counts from the data, or pass the counts"
                )
            counts = torch.tensor(class_counts, dtype=torch.float32).clamp_min(1.0)
            return counts.sum() / (len(class_counts) * counts)
        if len(class_weights) != num_outputs:
            raise ConfigError(
                f"model.class_weights has {len(class_weights)} values but there are {num_outputs} classes"
            )
        return torch.tensor(class_weights, dtype=torch.float32)

    @override
    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Return (B,) predictions for regression or (B, C) logits for classification."""
        outputs = self.net(features)
        return outputs.squeeze(-1) if self.task == "regression" else outputs

    def compute_loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Return the mean loss of a batch, after checking that the shapes cannot broadcast."""
        _check_shapes(outputs, targets, self.task)
        if self.loss_name == "mse":
            return F.mse_loss(outputs, targets)
        if self.loss_name == "huber":
            return F.huber_loss(outputs, targets, delta=self.hparams.huber_delta)
        return F.cross_entropy(outputs, targets, weight=self.class_weight)

    def _original_units(self, values: torch.Tensor) -> torch.Tensor:
        return values * self.hparams.target_std + self.hparams.target_mean

    def _stage_metrics(self, stage: str) -> StageMetrics:
        return getattr(self, f"{stage}_metrics")

    def _update_metrics(self, stage: str, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        if self.task == "regression":
            self._stage_metrics(stage).update(self._original_units(outputs.detach()), self._original_units(targets))
        else:
            self._stage_metrics(stage).update(outputs.detach(), targets)

    @override
    def on_train_start(self) -> None:
        # A run resumed mid-epoch skips on_train_epoch_start, so the sum starts here too.
        # NOTE: after such a resume, that epoch's train/loss averages only the resumed batches.
        if self._train_loss_sum is None:
            self.on_train_epoch_start()

    @override
    def on_train_epoch_start(self) -> None:
        self._train_loss_sum = torch.zeros((), device=self.device)
        self._train_rows = 0

    @override
    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        self._in_train_batch = True

    @override
    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._in_train_batch = False

    @override
    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        features, targets = batch
        outputs = self(features)
        loss = self.compute_loss(outputs, targets)
        if not self._in_train_batch:
            # Called outside the fit loop, for example by a callback that checks per-sample losses.
            return loss

        # The epoch mean is accumulated on the device, because a self.log call every step costs
        # about as much as the rest of Lightning's loop at small batch sizes.
        self._train_loss_sum += loss.detach() * targets.shape[0]
        self._train_rows += targets.shape[0]
        if (self.global_step + 1) % max(1, self.trainer.log_every_n_steps) == 0:
            self.log("train/loss_step", loss, on_step=True, on_epoch=False, batch_size=targets.shape[0])
        if self.hparams.log_train_metrics:
            self._update_metrics("train", outputs, targets)
        return loss

    @override
    def on_train_epoch_end(self) -> None:
        if self._train_rows > 0:
            self.log("train/loss", self._train_loss_sum / self._train_rows, sync_dist=True)
        if self.hparams.log_train_metrics:
            self._log_stage_metrics("train")

    def _evaluation_step(self, stage: str, batch: tuple[torch.Tensor, torch.Tensor]) -> None:
        features, targets = batch
        outputs = self(features)
        loss = self.compute_loss(outputs, targets)
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, batch_size=targets.shape[0], sync_dist=True)
        self._update_metrics(stage, outputs, targets)

    @override
    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluation_step("val", batch)

    @override
    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluation_step("test", batch)

    @override
    def on_validation_epoch_end(self) -> None:
        self._log_stage_metrics("val")

    @override
    def on_test_epoch_end(self) -> None:
        self._log_stage_metrics("test")

    def _log_stage_metrics(self, stage: str) -> None:
        # torchmetrics gathers the states of all DDP processes inside compute(), so every process
        # has the same values; sync_dist only averages equal numbers and silences Lightning's warning.
        values, confusion = self._stage_metrics(stage).compute()
        self.log_dict({f"{stage}/{name}": value for name, value in values.items()}, sync_dist=True)
        if confusion is None or self.trainer.sanity_checking or not self.trainer.is_global_zero:
            return
        for logger in self.loggers:
            if isinstance(logger, TensorBoardLogger):
                names = self._stage_metrics(stage).class_names
                logger.experiment.add_image(f"{stage}/confusion_matrix", confusion_image(confusion), self.global_step)
                logger.experiment.add_text(
                    f"{stage}/confusion_matrix", confusion_markdown(confusion, names), self.global_step
                )

    @override
    def predict_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """Return predictions in the target's original units, or class probabilities."""
        features, _ = batch
        outputs = self(features)
        if self.task == "regression":
            return self._original_units(outputs)
        return outputs.softmax(dim=-1)

    @override
    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer(self.parameters())
        if self.lr_scheduler is None:
            return optimizer
        scheduler = self.lr_scheduler(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "monitor": "val/loss"}}
