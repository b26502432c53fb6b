"""Guarantees of each batch sampler, checked on random label vectors.

The label vectors use keys that are not 0..C-1, include a group of one sample, and sizes that the
batch size does not divide. Process ranks are simulated by building one sampler per rank.
"""

from __future__ import annotations

import math

import pytest
import torch

from lightning_app.errors import ConfigError
from lightning_app.samplers import (
    BalancedBatchSampler,
    ImbalancedBatchSampler,
    RandomBatchSampler,
    SequentialBatchSampler,
    StratifiedBatchSampler,
    encode_groups,
    quantile_bins,
)
from lightning_app.samplers.quota import apportion, batch_counts, member_positions, plan_quotas

KEYS = torch.tensor([-7, 3, 12, 40, 41, 1000])


def random_labels(num_samples: int, seed: int) -> torch.Tensor:
    """Skewed random labels over KEYS, with key 1000 held by exactly one sample."""
    generator = torch.Generator().manual_seed(seed)
    weights = torch.tensor([0.5, 0.2, 0.15, 0.1, 0.05])
    codes = torch.multinomial(weights, num_samples - 1, replacement=True, generator=generator)
    labels = KEYS[codes]
    return torch.cat([labels, KEYS[-1:]])[torch.randperm(num_samples, generator=generator)]


def group_counts(batch: torch.Tensor, labels: torch.Tensor) -> dict[int, int]:
    values, counts = torch.unique(labels[batch], return_counts=True)
    return dict(zip(values.tolist(), counts.tolist(), strict=True))


def assert_counts_within(batch_counts_: dict[int, int], expected: dict[int, float]) -> None:
    for key, target in expected.items():
        count = batch_counts_.get(key, 0)
        assert math.floor(target + 1e-9) <= count <= math.ceil(target - 1e-9), (key, count, target)


def rank_samplers(cls, num_replicas: int, **kwargs) -> list:
    return [cls(num_replicas=num_replicas, rank=rank, **kwargs) for rank in range(num_replicas)]


# ---- the placement rule behind stratified, balanced and imbalanced batches


@pytest.mark.parametrize("seed", range(40))
def test_quota_positions_exact(seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    num_groups = int(torch.randint(1, 9, (1,), generator=generator))
    num_batches = int(torch.randint(1, 10, (1,), generator=generator))
    batch_size = int(torch.randint(1, 13, (1,), generator=generator))
    weights = torch.rand(num_groups, generator=generator).tolist()
    totals = apportion(num_batches * batch_size, weights)
    plan = plan_quotas(totals, num_batches, batch_size)
    rotation = int(torch.randint(num_batches, (1,), generator=generator))

    group = torch.repeat_interleave(torch.arange(num_groups), totals)
    member = torch.arange(group.numel()) - (torch.cumsum(totals, 0) - totals)[group]
    positions = member_positions(plan, group, member, rotation)

    assert torch.equal(torch.sort(positions).values, torch.arange(num_batches * batch_size))
    layout = torch.empty(num_batches * batch_size, dtype=torch.int64)
    layout[positions] = group
    per_batch = torch.stack([torch.bincount(row, minlength=num_groups) for row in layout.view(num_batches, -1)])
    assert torch.equal(per_batch, batch_counts(plan, rotation))
    assert bool((per_batch >= totals // num_batches).all())
    assert bool((per_batch <= -(-totals // num_batches)).all())
    for row in layout.view(num_batches, -1):
        assert torch.equal(row, torch.sort(row).values), "groups must sit in contiguous blocks"


def test_apportion_sums_and_rounds() -> None:
    shares = apportion(10, [0.5, 0.3, 0.2 + 1e-17])
    assert shares.tolist() == [5, 3, 2]
    shares = apportion(7, [1, 1, 1])
    assert int(shares.sum()) == 7
    assert sorted(shares.tolist()) == [2, 2, 3]


# ---- stratified


@pytest.mark.parametrize(("num_samples", "batch_size"), [(203, 16), (97, 10), (64, 8), (50, 64)])
def test_stratified_uses_each_sample_once(num_samples: int, batch_size: int) -> None:
    labels = random_labels(num_samples, seed=num_samples)
    sampler = StratifiedBatchSampler(groups=labels, batch_size=batch_size, seed=3)
    batches = list(sampler)
    flat = torch.cat(batches)
    assert len(batches) == len(sampler) == math.ceil(num_samples / batch_size)
    assert torch.equal(torch.sort(flat).values, torch.arange(num_samples))


@pytest.mark.parametrize(("num_samples", "batch_size"), [(203, 16), (97, 10), (1001, 40)])
def test_stratified_batch_proportions(num_samples: int, batch_size: int) -> None:
    labels = random_labels(num_samples, seed=7 * num_samples)
    shares = {key: count / num_samples for key, count in group_counts(torch.arange(num_samples), labels).items()}
    sampler = StratifiedBatchSampler(groups=labels, batch_size=batch_size, seed=0)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        for batch in sampler:
            assert_counts_within(group_counts(batch, labels), {k: p * batch.numel() for k, p in shares.items()})


def test_stratified_epochs_deterministic_and_distinct() -> None:
    labels = random_labels(300, seed=1)
    first = StratifiedBatchSampler(groups=labels, batch_size=32, seed=5)
    second = StratifiedBatchSampler(groups=labels, batch_size=32, seed=5)
    first.set_epoch(4)
    second.set_epoch(4)
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    second.set_epoch(5)
    assert not all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    other_seed = StratifiedBatchSampler(groups=labels, batch_size=32, seed=6)
    other_seed.set_epoch(4)
    assert not all(torch.equal(a, b) for a, b in zip(first, other_seed, strict=True))


def test_stratified_epoch_via_lightning_hook() -> None:
    """Lightning calls set_epoch on ``batch_sampler.sampler``, so that object must reach the batch sampler."""
    sampler = StratifiedBatchSampler(groups=random_labels(100, seed=2), batch_size=10)
    before = list(sampler)
    sampler.sampler.set_epoch(1)
    assert sampler.epoch == 1
    assert not all(torch.equal(a, b) for a, b in zip(before, sampler, strict=True))


@pytest.mark.parametrize(
    ("cls", "extra"),
    [
        (StratifiedBatchSampler, {}),
        (BalancedBatchSampler, {}),
        (ImbalancedBatchSampler, {"long_tail_ratio": 0.25}),
        (RandomBatchSampler, {}),
        (SequentialBatchSampler, {}),
    ],
)
@pytest.mark.parametrize(("num_samples", "batch_size", "num_replicas"), [(203, 24, 2), (150, 30, 3), (96, 12, 4)])
def test_ranks_split_each_global_batch(cls, extra: dict, num_samples: int, batch_size: int, num_replicas: int) -> None:
    labels = random_labels(num_samples, seed=num_samples + num_replicas)
    if cls in (RandomBatchSampler, SequentialBatchSampler):
        common = {"num_samples": num_samples}
    else:
        common = {"groups": labels, **extra}
    single = cls(batch_size=batch_size, seed=11, **common)
    ranks = rank_samplers(cls, num_replicas, batch_size=batch_size, seed=11, **common)
    for epoch in (0, 1):
        single.set_epoch(epoch)
        for sampler in ranks:
            sampler.set_epoch(epoch)
        per_rank = [list(sampler) for sampler in ranks]
        assert len({len(batches) for batches in per_rank}) == 1, "every rank must yield the same number of batches"
        global_batches = list(single)
        for step, global_batch in enumerate(global_batches[: len(per_rank[0])]):
            shares = [batches[step] for batches in per_rank]
            joined = torch.cat(shares)
            assert torch.equal(torch.sort(joined).values, torch.sort(global_batch).values)
            if cls is not BalancedBatchSampler and cls is not ImbalancedBatchSampler:
                assert joined.unique().numel() == joined.numel(), "ranks must receive disjoint samples"
            if cls is StratifiedBatchSampler:
                totals = group_counts(torch.arange(num_samples), labels)
                for share in shares:
                    expected = {k: n / num_samples * share.numel() for k, n in totals.items()}
                    # within one of the share's own proportion, as the floor/ceiling bound of the batch allows
                    for key, target in expected.items():
                        assert abs(group_counts(share, labels).get(key, 0) - target) < 1 + 1e-9
        if cls in (StratifiedBatchSampler, RandomBatchSampler, SequentialBatchSampler):
            union = torch.cat([torch.cat(batches) for batches in per_rank])
            tail = num_samples % batch_size
            expected_size = num_samples if tail == 0 or tail >= num_replicas else num_samples - tail
            assert union.numel() == expected_size
            assert union.unique().numel() == expected_size


def test_stratified_rank_shares_bounded() -> None:
    labels = random_labels(480, seed=9)
    totals = group_counts(torch.arange(480), labels)
    for sampler in rank_samplers(StratifiedBatchSampler, 4, groups=labels, batch_size=48, seed=2):
        for share in sampler:
            expected = {k: n / 480 * share.numel() for k, n in totals.items()}
            assert_counts_within(group_counts(share, labels), expected)


def test_global_batch_must_divide_by_ranks() -> None:
    with pytest.raises(ConfigError, match="does not divide by the 3 processes"):
        StratifiedBatchSampler(groups=random_labels(60, seed=0), batch_size=16, num_replicas=3, rank=0)


# ---- balanced and imbalanced


@pytest.mark.parametrize(("num_samples", "batch_size"), [(203, 12), (97, 10), (500, 64)])
def test_balanced_counts_within_one(num_samples: int, batch_size: int) -> None:
    labels = random_labels(num_samples, seed=num_samples)
    num_groups = 6
    sampler = BalancedBatchSampler(groups=labels, batch_size=batch_size, seed=1)
    assert len(sampler) == math.ceil(num_samples / batch_size)
    for epoch in range(2):
        sampler.set_epoch(epoch)
        for batch in sampler:
            assert batch.numel() == batch_size
            counts = group_counts(batch, labels)
            assert set(counts) == set(KEYS.tolist())
            assert max(counts.values()) - min(counts.values()) <= 1
            assert min(counts.values()) == batch_size // num_groups


def test_balanced_cycles_before_repeating() -> None:
    """Each group's draws, read across epochs, are back-to-back permutations of the group."""
    labels = random_labels(150, seed=4)
    sampler = BalancedBatchSampler(groups=labels, batch_size=12, seed=8)
    draws: list[torch.Tensor] = []
    for epoch in range(4):
        sampler.set_epoch(epoch)
        draws.append(torch.cat(list(sampler)))
    stream = torch.cat(draws)
    for key in KEYS.tolist():
        members = (labels == key).nonzero().flatten()
        of_group = stream[labels[stream] == key]
        full_cycles = of_group.numel() // members.numel()
        assert full_cycles >= 1
        for cycle in range(full_cycles):
            chunk = of_group[cycle * members.numel() : (cycle + 1) * members.numel()]
            assert torch.equal(torch.sort(chunk).values, members), f"group {key} repeats before it is used up"


def test_balanced_rejects_small_batch() -> None:
    with pytest.raises(ConfigError, match="smaller than the 6 groups"):
        BalancedBatchSampler(groups=random_labels(100, seed=0), batch_size=5)


def test_balanced_warns_group_smaller_than_quota() -> None:
    labels = torch.tensor([0] * 50 + [1] * 2)
    with pytest.warns(UserWarning, match="group 1 has 2 training samples.*batch_size 4 or less avoids that"):
        sampler = BalancedBatchSampler(groups=labels, batch_size=6)
    for batch in sampler:
        assert group_counts(batch, labels) == {0: 3, 1: 3}


def test_imbalanced_follows_proportions() -> None:
    labels = random_labels(400, seed=3)
    proportions = {-7: 0.1, 3: 0.2, 12: 0.3, 40: 0.25, 41: 0.149, 1000: 0.001}
    sampler = ImbalancedBatchSampler(groups=labels, proportions=proportions, batch_size=40, seed=0, num_batches=25)
    assert len(sampler) == 25
    for batch in sampler:
        assert_counts_within(group_counts(batch, labels), {k: p * 40 for k, p in proportions.items()})


def test_imbalanced_long_tail_shares() -> None:
    labels = torch.arange(10).repeat_interleave(50)
    sampler = ImbalancedBatchSampler(groups=labels, long_tail_ratio=0.1, batch_size=50, seed=0)
    counts = torch.bincount(labels[torch.cat(list(sampler))], minlength=10).double()
    assert counts[0] / counts[9] == pytest.approx(10, rel=0.15)
    assert bool((counts[:-1] >= counts[1:]).all())


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"proportions": {3: 0.5, 99: 0.5}}, "names group 99, which is not in the training data"),
        ({"proportions": {3: 0.5, 12: 0.4}}, "sum to 0.9"),
        ({"proportions": {3: 1.2, 12: -0.2}}, "share -0.2"),
        ({}, "exactly one of"),
        ({"proportions": {3: 1.0}, "long_tail_ratio": 0.5}, "exactly one of"),
        ({"long_tail_ratio": 0.0}, "long_tail_ratio is 0.0"),
    ],
)
def test_imbalanced_rejects_bad_options(options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ImbalancedBatchSampler(groups=random_labels(200, seed=0), batch_size=20, **options)


# ---- resume, grouping keys


@pytest.mark.parametrize("cls", [StratifiedBatchSampler, BalancedBatchSampler, RandomBatchSampler])
def test_resume_mid_epoch_continues(cls) -> None:
    labels = random_labels(230, seed=5)
    kwargs = {"num_samples": 230} if cls is RandomBatchSampler else {"groups": labels}
    reference = cls(batch_size=20, seed=4, **kwargs)
    reference.set_epoch(2)
    expected = list(reference)

    interrupted = cls(batch_size=20, seed=4, **kwargs)
    interrupted.set_epoch(2)
    iterator = iter(interrupted)
    for _ in range(5):
        next(iterator)
    state = interrupted.state_dict()
    assert state["epoch"] == 2
    assert state["batches_yielded"] == 5

    resumed = cls(batch_size=20, seed=4, **kwargs)
    resumed.load_state_dict(state)
    rest = list(resumed)
    assert len(rest) == len(expected) - 5
    assert all(torch.equal(a, b) for a, b in zip(rest, expected[5:], strict=True))
    # the following iteration starts the next epoch from its first batch
    resumed.set_epoch(3)
    reference.set_epoch(3)
    assert all(torch.equal(a, b) for a, b in zip(resumed, reference, strict=True))


def test_resume_after_full_epoch_starts_next() -> None:
    sampler = StratifiedBatchSampler(groups=random_labels(100, seed=1), batch_size=10, seed=0)
    list(sampler)
    resumed = StratifiedBatchSampler(groups=random_labels(100, seed=1), batch_size=10, seed=0)
    resumed.load_state_dict(sampler.state_dict())
    assert resumed.epoch == 1
    assert len(list(resumed)) == 10


def test_resume_rejects_other_settings() -> None:
    state = StratifiedBatchSampler(groups=random_labels(100, seed=1), batch_size=10).state_dict()
    with pytest.raises(ConfigError, match="batch_size=10 but this run has 20"):
        StratifiedBatchSampler(groups=random_labels(100, seed=1), batch_size=20).load_state_dict(state)


def test_encode_groups_dense_codes() -> None:
    groups = encode_groups(torch.tensor([40, -7, 40, 1000]))
    assert groups.values.tolist() == [-7, 40, 1000]
    assert groups.codes.tolist() == [1, 0, 1, 2]
    assert groups.counts.tolist() == [1, 2, 1]
    with pytest.raises(ConfigError, match="must be integers"):
        encode_groups(torch.tensor([0.5, 1.5]))


def test_quantile_bins_equal_counts() -> None:
    target = torch.randn(1000, generator=torch.Generator().manual_seed(0))
    bins = quantile_bins(target, 4)
    assert bins.counts.tolist() == [250, 250, 250, 250]
    assert bool(target[bins.codes == 0].max() < target[bins.codes == 1].min())


def test_quantile_bins_reject_empty_bins() -> None:
    target = torch.tensor([1.0] * 90 + [2.0] * 10)
    with pytest.raises(ConfigError, match="empty because of tied values"):
        quantile_bins(target, 5)


def test_stratified_many_groups_sort_path() -> None:
    """Above 4096 groups the within-group shuffle is one sort of random keys instead of randperm calls."""
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 5000, (12_000,), generator=generator) * 3 - 7
    num_groups = int(labels.unique().numel())
    assert num_groups > 4096
    sampler = StratifiedBatchSampler(groups=labels, batch_size=1000, seed=1)
    shares = {key: count / labels.numel() for key, count in group_counts(torch.arange(labels.numel()), labels).items()}
    first = list(sampler)
    assert torch.equal(torch.sort(torch.cat(first)).values, torch.arange(labels.numel()))
    for batch in first:
        assert_counts_within(group_counts(batch, labels), {k: p * batch.numel() for k, p in shares.items()})
    sampler.set_epoch(1)
    assert not all(torch.equal(a, b) for a, b in zip(first, sampler, strict=True))
