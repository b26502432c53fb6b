"""Per-stage torchmetrics for regression and classification, and the confusion matrix as an image."""

from __future__ import annotations

import torch
from torch import nn
from torchmetrics import MeanAbsoluteError, MeanSquaredError, MetricCollection, R2Score
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassRecall,
)


class StageMetrics(nn.Module):
    """Metrics of one stage (train, val or test), updated per batch and read once per epoch.

    Regression: ``mse``, ``mae`` and ``r2`` in the target's original units. Classification:
    ``acc``, ``balanced_acc`` (macro recall), ``f1_macro``, ``recall/<class>`` and a confusion
    matrix (rows are true classes, columns predicted ones).
    """

    def __init__(self, task: str, num_classes: int, class_names: list[str] | None = None) -> None:
        super().__init__()
        self.task = task
        self.class_names = class_names or [str(index) for index in range(num_classes)]
        if task == "regression":
            self.scalars = MetricCollection({"mse": MeanSquaredError(), "mae": MeanAbsoluteError(), "r2": R2Score()})
            self.per_class = None
            self.confusion = None
        else:
            self.scalars = MetricCollection(
                {
                    "acc": MulticlassAccuracy(num_classes, average="micro"),
                    "balanced_acc": MulticlassRecall(num_classes, average="macro"),
                    "f1_macro": MulticlassF1Score(num_classes, average="macro"),
                }
            )
            self.per_class = MulticlassRecall(num_classes, average="none")
            self.confusion = MulticlassConfusionMatrix(num_classes)

    def update(self, predictions: torch.Tensor, targets: torch.Tensor) -> None:
        """Add a batch: (B,) predictions for regression, (B, C) logits for classification."""
        self.scalars.update(predictions, targets)
        if self.per_class is not None:
            self.per_class.update(predictions, targets)
            self.confusion.update(predictions, targets)

    def compute(self) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
        """Return the epoch's scalar metrics and the confusion matrix (None for regression), then reset."""
        values = dict(self.scalars.compute())
        confusion = None
        if self.per_class is not None:
            recalls = self.per_class.compute()
            for name, recall in zip(self.class_names, recalls):
                values[f"recall/{name}"] = recall
            confusion = self.confusion.compute()
            self.per_class.reset()
            self.confusion.reset()
        self.scalars.reset()
        return values, confusion


def confusion_image(confusion: torch.Tensor, cell_pixels: int = 16) -> torch.Tensor:
    """Return a (1, H, W) grayscale image of the row-normalised confusion matrix for TensorBoard.

    Each cell is the share of a true class (row) predicted as each class (column): white is 1.
    """
    counts = confusion.float()
    shares = counts / counts.sum(dim=1, keepdim=True).clamp_min(1.0)
    image = shares.repeat_interleave(cell_pixels, dim=0).repeat_interleave(cell_pixels, dim=1)
    return image.unsqueeze(0).cpu()


def confusion_markdown(confusion: torch.Tensor, class_names: list[str]) -> str:
    """Return the confusion matrix counts as a Markdown table (rows true, columns predicted)."""
    header = "| true \\ predicted | " + " | ".join(class_names) + " |"
    rule = "|---" * (len(class_names) + 1) + "|"
    rows = [
        f"| {name} | " + " | ".join(str(int(count)) for count in row) + " |"
        for name, row in zip(class_names, confusion.tolist())
    ]
    return "\n".join([header, rule, *rows])
