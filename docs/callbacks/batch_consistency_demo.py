"""Run BatchConsistencyCheck on the template's model and on four faulty subclasses; print and plot the errors.

Run: python docs/callbacks/batch_consistency_demo.py docs/callbacks/batch_consistency.png
(needs matplotlib for the plot).
"""

from __future__ import annotations

import sys
import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from lightning.pytorch import Trainer, seed_everything

from lightning_app.callbacks import BatchConsistencyCheck
from lightning_app.data import NoiseRegression, TabularDataModule
from lightning_app.model import TabularModel


class BroadcastTarget(TabularModel):
    """Compares a (B, 1) output with the (B,) target."""

    def compute_loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(outputs.unsqueeze(-1), targets)


class SumReduction(TabularModel):
    """Sums the squared errors over the batch."""

    def compute_loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(outputs, targets, reduction="sum")


class BatchCentering(TabularModel):
    """Subtracts the batch mean from the inputs."""

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return super().forward(features - features.mean(0, keepdim=True))


MODELS = {
    "TabularModel": (TabularModel, {}),
    "norm: batch": (TabularModel, {"hidden_sizes": [16], "norm": "batch"}),
    "broadcast target": (BroadcastTarget, {}),
    "sum reduction": (SumReduction, {}),
    "batch centering": (BatchCentering, {}),
}


def main(output: str) -> None:
    names, errors = [], []
    print(f"{'model':<18} {'loss error':>11} {'grad error':>11} {'mixing error':>13}  findings")
    for name, (model_class, arguments) in MODELS.items():
        seed_everything(0)
        datamodule = TabularDataModule(NoiseRegression(num_samples=200), batch_size=32)
        model = model_class(num_features=datamodule.num_features, num_outputs=1, task="regression", **arguments)
        check = BatchConsistencyCheck(mode="warn")
        trainer = Trainer(
            max_steps=1,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
        )
        trainer.callbacks.append(check)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer.fit(model, datamodule=datamodule)
        result = check.result
        row = [result.loss_error, result.grad_error, result.mixing_error]
        names.append(name)
        errors.append(row)
        print(f"{name:<18} {row[0]:>11.2e} {row[1]:>11.2e} {row[2]:>13.2e}  {len(check.findings)}")

    figure, axis = plt.subplots(figsize=(8, 4))
    width = 0.27
    for index, label in enumerate(["loss error", "gradient error", "sample-mixing error"]):
        positions = [position + (index - 1) * width for position in range(len(names))]
        axis.bar(positions, [max(row[index], 1e-9) for row in errors], width, label=label)
    axis.axhline(1e-3, color="black", linestyle=":", label="rtol 1e-3")
    axis.set_yscale("log")
    axis.set_xticks(range(len(names)), names)
    axis.set_ylabel("relative error (floored at 1e-9)")
    axis.set_title("BatchConsistencyCheck on 8 samples of the pure-noise data")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(output, dpi=100)


if __name__ == "__main__":
    main(sys.argv[1])
