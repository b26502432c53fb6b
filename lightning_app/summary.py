"""Print the first, minimum and last value of each scalar a run logged to TensorBoard.

Usage: python -m lightning_app.summary RUN_DIR [TAG ...]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def read_scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Return {tag: [(step, value), ...]} for every scalar in the run directory's event files."""
    if not Path(run_dir).is_dir():
        raise FileNotFoundError(f"run directory not found: {run_dir}; pass a folder such as logs/NAME/version_0")
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [(event.step, event.value) for event in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def main() -> None:
    arguments = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    arguments.add_argument("run_dir", type=Path, help="a run directory such as logs/NAME/version_0")
    arguments.add_argument("tags", nargs="*", help="scalar tags to print; all when none are given")
    options = arguments.parse_args()

    try:
        scalars = read_scalars(options.run_dir)
    except FileNotFoundError as error:
        raise SystemExit(f"error: {error}") from None
    tags = options.tags or sorted(scalars)
    for tag in tags:
        if tag not in scalars:
            raise SystemExit(f"error: tag '{tag}' not found in {options.run_dir}; available: {', '.join(sorted(scalars))}")

    width = max([len("tag"), *map(len, tags)])
    print(f"{'tag':<{width}} {'points':>6} {'first':>12} {'min':>12} {'last':>12} {'last step':>9}")
    for tag in tags:
        values = [value for _, value in scalars[tag]]
        finite = [value for value in values if math.isfinite(value)]
        smallest = min(finite) if finite else math.nan
        last_step = scalars[tag][-1][0]
        print(f"{tag:<{width}} {len(values):>6} {values[0]:>12.6g} {smallest:>12.6g} {values[-1]:>12.6g} {last_step:>9}")


if __name__ == "__main__":
    main()
