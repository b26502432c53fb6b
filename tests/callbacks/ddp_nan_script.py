"""Two-process DDP run on the CPU where only rank 1 gets a NaN loss; each rank writes what it did.

Run: python tests/callbacks/ddp_nan_script.py OUTPUT_DIR NAN_STEP
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from lightning.pytorch import Trainer, seed_everything
from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))
from toy_models import LinearRegression, noise_regression

from lightning_app.callbacks import DivergenceDetector, GradNormMonitor


def main(output_dir: Path, nan_step: int) -> None:
    seed_everything(0)
    # Only the reported loss is NaN: the gradients stay finite, so the ranks agree only through the detector.
    model = LinearRegression(lr=0.05, momentum=0.9, nan_steps=(nan_step,), nan_rank=1, nan_loss_only=True)
    detector = DivergenceDetector(action="stop", check_every_n_steps=3)
    trainer = Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        max_steps=40,
        logger=TensorBoardLogger(output_dir, name="", version=""),
        default_root_dir=output_dir,
        callbacks=[detector, GradNormMonitor(every_n_steps=2)],
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    trainer.fit(model, DataLoader(noise_regression(1024), batch_size=16))
    record = {
        "rank": trainer.global_rank,
        "global_step": trainer.global_step,
        "stopped_at": detector.stopped_at,
        "events": detector.events.count,
        "weight": model.net.weight.detach().flatten().tolist(),
        "finite": bool(torch.isfinite(model.net.weight).all()),
    }
    (output_dir / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
