"""Run the two sampler experiments through the real CLI and print their measured results.

    python benchmarks/sampler_experiments.py classic    # 900/100 rows, random vs stratified batches
    python benchmarks/sampler_experiments.py longtail   # long-tailed digits, 3 samplers x 3 seeds x 2 ratios
    python benchmarks/sampler_experiments.py longtail --ratios 0.02 --no-header   # one ratio, rows only

Runs log to TensorBoard under logs/experiments/. Both commands print Markdown tables.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lightning_app.cli import cli_main

QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
MINORITY_CLASSES = ("7", "8", "9")  # the three smallest classes of the long-tailed training set


def run(config_args: list[str], name: str, seed: int) -> object:
    args = ["fit", *config_args, *QUIET, "--seed_everything", str(seed), "--data.seed", str(seed)]
    args += ["--trainer.logger.init_args.save_dir", str(ROOT / "logs" / "experiments")]
    args += ["--trainer.logger.init_args.name", name]
    return cli_main(args)


def batch_composition(datamodule, epochs: int) -> tuple[list[int], int]:
    """Return the minority-group count of every training batch over ``epochs`` epochs, and the batch size."""
    loader = datamodule.train_dataloader()
    sampler = loader.batch_sampler
    groups = datamodule.train_set.groups
    minority = int(groups.bincount().argmin())
    counts = []
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        counts += [int((groups[batch] == minority).sum()) for batch in sampler]
    return counts, sampler.batch_size


def classic(epochs_shown: tuple[int, ...] = (1, 5, 10, 20, 40)) -> None:
    print(
        "| sampler | minority rows per batch: min / mean / max | train/loss at epochs "
        f"{', '.join(map(str, epochs_shown))} | std of per-step loss, last 10 epochs |"
    )
    print("|---|---|---|---|")
    for sampler in ("random", "stratified"):
        cli = run(["--config", "configs/imbalanced_900_100.yaml", "--data.sampler", sampler], f"classic_{sampler}", 0)
        counts, _ = batch_composition(cli.datamodule, cli.trainer.max_epochs)
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        events = EventAccumulator(cli.trainer.logger.log_dir, size_guidance={"scalars": 0})
        events.Reload()
        epoch_loss = [event.value for event in events.Scalars("train/loss")]
        step_loss = [event.value for event in events.Scalars("train/loss_step")]
        steps_per_epoch = len(step_loss) // len(epoch_loss)
        loss_at_epochs = ", ".join(f"{epoch_loss[e - 1]:.4f}" for e in epochs_shown if e <= len(epoch_loss))
        spread = statistics.pstdev(step_loss[-10 * steps_per_epoch :])
        print(
            f"| {sampler} | {min(counts)} / {statistics.mean(counts):.1f} / {max(counts)} | "
            f"{loss_at_epochs} | {spread:.4f} |"
        )


def longtail(ratios: tuple[float, ...], seeds: tuple[int, ...] = (0, 1, 2), header: bool = True) -> None:
    if header:
        print("| f | sampler | balanced accuracy (test) | recall of classes 7-9 (test) | recall of class 9 (test) |")
        print("|---|---|---|---|---|")
    for ratio in ratios:
        for sampler in ("random", "stratified", "balanced"):
            balanced_acc, minority, last = [], [], []
            for seed in seeds:
                config = ["--config", "configs/digits_mlp.yaml", "--config", "configs/longtail_digits.yaml"]
                config += ["--data.train_long_tail", str(ratio), "--data.sampler", sampler]
                cli = run(config, f"longtail_f{ratio}_{sampler}_seed{seed}", seed)
                result = cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)[0]
                balanced_acc.append(result["test/balanced_acc"])
                minority.append(statistics.mean(result[f"test/recall/{name}"] for name in MINORITY_CLASSES))
                last.append(result["test/recall/9"])
            print(
                f"| {ratio} | {sampler} | {format_spread(balanced_acc)} | {format_spread(minority)} | "
                f"{format_spread(last)} |"
            )


def format_spread(values: list[float]) -> str:
    """Mean ± sample standard deviation, and the values."""
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {spread:.3f} ({', '.join(f'{v:.3f}' for v in values)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiment", choices=["classic", "longtail"])
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.1, 0.02], help="long-tail ratios f to run")
    parser.add_argument("--no-header", action="store_true", help="print table rows only, to append to a table")
    args = parser.parse_args()
    if args.experiment == "classic":
        classic()
    else:
        longtail(tuple(args.ratios), header=not args.no_header)


if __name__ == "__main__":
    main()
