"""Shared fixtures: run the real CLI in a subprocess and read TensorBoard event files back."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from lightning_app.summary import read_scalars as _read_scalars

REPO_ROOT = Path(__file__).resolve().parents[1]


def _run_cli(args: list[str], cwd: Path = REPO_ROOT, timeout: float = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    command = [sys.executable, str(REPO_ROOT / "train.py"), *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def run_cli() -> Callable[..., subprocess.CompletedProcess]:
    """Run ``python train.py ARGS`` in a subprocess; returns the CompletedProcess (text output)."""
    return _run_cli


@pytest.fixture
def read_scalars() -> Callable[[Path], dict[str, list[tuple[int, float]]]]:
    """Read every scalar of a TensorBoard run directory: {tag: [(step, value), ...]}."""
    return _read_scalars


@pytest.fixture
def repo_root() -> Path:
    return REPO_ROOT
