"""Run ``train.py fit`` for several configs and seeds in one process and print each run's event count.

Run: python tests/callbacks/config_sweep.py LOG_DIR "CONFIG SEED [EXTRA ARGS...]" ...
Each argument after LOG_DIR is one run. Prints one JSON object: {"<config stem>/<seed>": event count}.
Running the runs in one process saves the interpreter and import start-up of a subprocess per run.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

from lightning_app.callbacks.events import EVENTS_FILE_NAME
from lightning_app.cli import cli_main


def main(log_dir: Path, runs: list[str]) -> None:
    counts: dict[str, int] = {}
    for run in runs:
        config, seed, *extra = shlex.split(run)
        name = f"{Path(config).stem}_seed{seed}"
        arguments = ["fit", "--config", config, "--seed_everything", seed, *extra]
        arguments += ["--trainer.logger.init_args.save_dir", str(log_dir), "--trainer.logger.init_args.name", name]
        arguments += ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
        cli_main(arguments)
        events = log_dir / name / "version_0" / EVENTS_FILE_NAME
        counts[f"{Path(config).stem}/{seed}"] = len(events.read_text().splitlines()) if events.exists() else 0
    print(json.dumps(counts))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
