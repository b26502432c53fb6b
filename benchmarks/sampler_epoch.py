"""Time one epoch of index batches from each sampler against torch.randperm.

Each case runs in a fresh subprocess, so its peak memory (VmHWM) is its own, and times
``torch.randperm(N)`` between its own repeats, so the ratio compares runs on an equally busy
machine. Run from the repository root:

    python benchmarks/sampler_epoch.py --num-samples 10000000 --num-groups 100 --batch-size 100

Cases that a library cannot run are reported with the error instead of a time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CASES = {
    "randperm": "torch.randperm(N), the reference",
    "random": "RandomBatchSampler: build epoch",
    "stratified": "StratifiedBatchSampler: build epoch",
    "stratified_iterate": "StratifiedBatchSampler: build epoch and yield every batch",
    "balanced": "BalancedBatchSampler: build epoch",
    "weighted": "torch WeightedRandomSampler (inverse class frequency, replacement): one epoch of indices",
    "m_per_class": "pytorch-metric-learning MPerClassSampler(m=1): one epoch of indices",
    "torchsampler": "torchsampler ImbalancedDatasetSampler: one epoch of indices",
}


def peak_memory_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_case(case: str, num_samples: int, num_groups: int, batch_size: int, repeats: int) -> dict:
    """Run one case in this process and return its timings (seconds) and peak memory."""
    sys.path.insert(0, str(ROOT))
    import torch

    import lightning_app.samplers  # noqa: F401 (imported before timing: it imports Lightning)

    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, num_groups, (num_samples,), generator=generator)
    baseline = peak_memory_mib()
    setup_start = time.perf_counter()

    if case == "randperm":

        def epoch(e: int) -> object:
            return torch.randperm(num_samples, generator=generator)
    elif case in ("random", "stratified", "stratified_iterate", "balanced"):
        from lightning_app.samplers import BalancedBatchSampler, RandomBatchSampler, StratifiedBatchSampler

        if case == "random":
            sampler = RandomBatchSampler(num_samples=num_samples, batch_size=batch_size)
        elif case == "balanced":
            sampler = BalancedBatchSampler(groups=labels, batch_size=batch_size)
        else:
            sampler = StratifiedBatchSampler(groups=labels, batch_size=batch_size)
        if case == "stratified_iterate":

            def epoch(e: int) -> object:
                sampler.set_epoch(e)
                return sum(1 for _ in sampler)
        else:

            def epoch(e: int) -> object:
                return sampler.epoch_indices(e)
    elif case == "weighted":
        from torch.utils.data import WeightedRandomSampler

        weights = (1.0 / torch.bincount(labels).double())[labels]
        sampler = WeightedRandomSampler(weights, num_samples, replacement=True, generator=generator)

        def epoch(e: int) -> object:
            return sum(1 for _ in sampler)
    elif case == "m_per_class":
        from pytorch_metric_learning.samplers import MPerClassSampler

        sampler = MPerClassSampler(labels, m=1, batch_size=batch_size, length_before_new_iter=num_samples)

        def epoch(e: int) -> object:
            return sum(1 for _ in sampler)
    elif case == "torchsampler":
        from torch.utils.data import TensorDataset
        from torchsampler import ImbalancedDatasetSampler

        sampler = ImbalancedDatasetSampler(TensorDataset(torch.zeros(num_samples), labels))

        def epoch(e: int) -> object:
            return sum(1 for _ in sampler)
    else:
        raise ValueError(f"unknown case {case!r}")

    setup_seconds = time.perf_counter() - setup_start
    # The reference randperm runs between the case's repeats, so a busy machine slows both alike.
    times, reference_times = [], []
    for repeat in range(repeats):
        start = time.perf_counter()
        epoch(repeat)
        times.append(time.perf_counter() - start)
        start = time.perf_counter()
        torch.randperm(num_samples, generator=generator)
        reference_times.append(time.perf_counter() - start)
    return {
        "case": case,
        "setup_s": setup_seconds,
        "median_s": statistics.median(times),
        "randperm_median_s": statistics.median(reference_times),
        "peak_mib_above_labels": peak_memory_mib() - baseline,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-samples", type=int, default=10_000_000)
    parser.add_argument("--num-groups", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cases", nargs="*", default=list(CASES))
    parser.add_argument("--timeout", type=float, default=300, help="seconds allowed per case")
    parser.add_argument(
        "--slow-samples",
        type=int,
        default=100_000,
        help="dataset size for MPerClassSampler, whose Python loop per index makes the full size take minutes",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        result = run_case(args.child, args.num_samples, args.num_groups, args.batch_size, args.repeats)
        print(json.dumps(result))
        return

    import torch

    print(
        f"N={args.num_samples:,} groups={args.num_groups} batch={args.batch_size} repeats={args.repeats} "
        f"torch={torch.__version__} threads={torch.get_num_threads()}"
    )
    results = {}
    for case in args.cases:
        num_samples = args.slow_samples if case == "m_per_class" else args.num_samples
        command = [sys.executable, __file__, "--child", case, "--num-samples", str(num_samples)]
        command += ["--num-groups", str(args.num_groups), "--batch-size", str(args.batch_size)]
        command += ["--repeats", str(args.repeats)]
        try:
            done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=args.timeout)
        except subprocess.TimeoutExpired:
            results[case] = {"error": f"did not finish within {args.timeout:.0f} s", "num_samples": num_samples}
            continue
        if done.returncode != 0:
            last_line = (done.stderr.strip().splitlines() or ["no output"])[-1]
            results[case] = {"error": last_line[:160], "num_samples": num_samples}
        else:
            results[case] = json.loads(done.stdout.strip().splitlines()[-1])
        results[case]["num_samples"] = num_samples

    print(
        "| case | N | setup (s) | epoch median (s) | randperm median, same process (s) | ratio | "
        "peak memory above labels (MiB) |"
    )
    print("|---|---|---|---|---|---|---|")
    for case in args.cases:
        result = results[case]
        size = f"{result['num_samples']:,}"
        if "error" in result:
            print(f"| {CASES[case]} | {size} | - | failed: {result['error']} | - | - | - |")
            continue
        print(
            f"| {CASES[case]} | {size} | {result['setup_s']:.2f} | {result['median_s']:.3f} | "
            f"{result['randperm_median_s']:.3f} | {result['median_s'] / result['randperm_median_s']:.2f} | "
            f"{result['peak_mib_above_labels']:.0f} |"
        )


if __name__ == "__main__":
    main()
