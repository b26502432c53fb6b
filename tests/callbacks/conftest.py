"""Fixtures of the training-health callback tests; makes ``toy_models`` importable."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture
def quiet_trainer_kwargs(tmp_path: Path) -> dict:
    """Trainer arguments for small CPU runs without progress bars or checkpoints."""
    return {
        "accelerator": "cpu",
        "devices": 1,
        "default_root_dir": tmp_path,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
    }
