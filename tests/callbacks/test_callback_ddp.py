"""DivergenceDetector under real two-process DDP on the CPU (gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lightning_app.callbacks.events import EVENTS_FILE_NAME

SCRIPT = Path(__file__).resolve().parent / "ddp_nan_script.py"
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.ddp
def test_nan_on_one_rank_stops_both_ranks(tmp_path: Path) -> None:
    nan_step = 7
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path), str(nan_step)],
        check=False,
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]

    ranks = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    for record in ranks:
        assert record["stopped_at"] == nan_step
        assert record["finite"]
    assert ranks[0]["global_step"] == ranks[1]["global_step"]
    assert nan_step < ranks[0]["global_step"] <= nan_step + 3
    assert ranks[0]["weight"] == ranks[1]["weight"]

    events = [json.loads(line) for line in (tmp_path / EVENTS_FILE_NAME).read_text().splitlines()]
    assert [(event["step"], event["kind"], event["action"]) for event in events] == [
        (nan_step, "nonfinite_loss", "stop")
    ]

    accumulator = EventAccumulator(str(tmp_path))
    accumulator.Reload()
    logged_steps = [event.step for event in accumulator.Scalars("norms/grad_total")]
    assert logged_steps == list(range(0, ranks[0]["global_step"], 2))
