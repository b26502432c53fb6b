"""Draw the plots of docs/callbacks/ from TensorBoard run directories (needs matplotlib).

Run:
    python docs/callbacks/plot_runs.py divergence OUT.png NAME=RUN_DIR ...
    python docs/callbacks/plot_runs.py norms OUT.png NAME=RUN_DIR ...

``divergence`` plots ``train/loss_step`` with each run's first training-health event marked;
``norms`` plots ``norms/grad_total`` and the update-to-weight ratio of ``net.0.weight``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def _scalars(run_dir: Path, tag: str) -> tuple[list[int], list[float]]:
    accumulator = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    accumulator.Reload()
    events = accumulator.Scalars(tag)
    return [event.step for event in events], [event.value for event in events]


def plot_divergence(output: Path, runs: dict[str, Path]) -> None:
    figure, axis = plt.subplots(figsize=(7, 4))
    for name, run_dir in runs.items():
        # With one full batch per epoch, train/loss_step at step s is the loss the weights of step s give.
        steps, values = _scalars(run_dir, "train/loss_step")
        line = axis.plot(steps, values, label=name, marker=".")[0]
        events_file = run_dir / "health_events.jsonl"
        if events_file.exists():
            first = json.loads(events_file.read_text().splitlines()[0])
            axis.axvline(first["step"], color=line.get_color(), linestyle=":", alpha=0.7)
    axis.set_yscale("log")
    axis.set_xlabel("optimizer step")
    axis.set_xlim(-1, 40)
    axis.set_ylabel("train/loss_step")
    axis.set_title("Pure-noise regression, full-batch SGD at lr 1.0: dotted = first event")
    axis.legend()
    figure.tight_layout()
    figure.savefig(output, dpi=100)


def plot_norms(output: Path, runs: dict[str, Path]) -> None:
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for name, run_dir in runs.items():
        steps, values = _scalars(run_dir, "norms/grad_total")
        left.plot(steps, values, label=name)
        steps, values = _scalars(run_dir, "norms/update_ratio/net.0.weight")
        right.plot(steps, values, label=name)
    left.set_yscale("log")
    left.set_xlabel("optimizer step")
    left.set_title("norms/grad_total (pre-clip, unscaled)")
    right.set_yscale("log")
    right.set_xlabel("optimizer step")
    right.set_title("norms/update_ratio/net.0.weight")
    left.legend()
    figure.tight_layout()
    figure.savefig(output, dpi=100)


def main(arguments: list[str]) -> None:
    kind, output, *pairs = arguments
    runs = {pair.split("=", 1)[0]: Path(pair.split("=", 1)[1]) for pair in pairs}
    {"divergence": plot_divergence, "norms": plot_norms}[kind](Path(output), runs)


if __name__ == "__main__":
    main(sys.argv[1:])
