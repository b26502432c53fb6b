"""Per-batch group quotas and the closed-form position of every sample in an epoch.

An epoch of ``K`` full batches of size ``B`` gives group ``g`` ``T_g`` samples in all, with
``sum(T) == K * B``. Every batch receives ``a_g = T_g // K`` samples of group ``g`` plus at most one
extra, so each count is the floor or the ceiling of ``T_g / K``. The ``e_g = T_g - K * a_g`` extras of
all groups are laid end to end (group 0's first) and extra number ``t`` goes to batch
``(t + rotation) mod K``. Each group's run of extras is at most ``K`` long, so it lands in distinct
batches, and every batch gets the same number of extras, ``R = B - sum(a)``. This is McNaughton's
wrap-around rule for scheduling with preemption.

Inside a batch the groups sit in contiguous blocks in code order. Any contiguous block of length
``q`` holds ``floor(q / W)`` or ``ceil(q / W)`` of the positions ``r, r + W, r + 2W, ...``, so when rank
``r`` of ``W`` takes those strided positions its share keeps the same per-group bound at batch size
``B / W``.

The position of the ``j``-th sample of group ``g`` follows from these rules with a few integer
operations, so an epoch costs no sort beyond the one that groups the samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class QuotaPlan:
    """Per-group counts for ``num_batches`` full batches of ``batch_size``.

    Attributes:
        num_batches: K, the number of full batches.
        batch_size: B.
        base: (G,) int64 count every batch receives, ``T_g // K``.
        extra: (G,) int64 number of batches that receive one more, ``T_g mod K``.
        extra_start: (G,) int64 index of the group's first extra in the sequence of all extras.
        block_start: (G,) int64 sum of ``base`` over the groups before ``g``.
    """

    num_batches: int
    batch_size: int
    base: torch.Tensor
    extra: torch.Tensor
    extra_start: torch.Tensor
    block_start: torch.Tensor


def plan_quotas(totals: torch.Tensor, num_batches: int, batch_size: int) -> QuotaPlan:
    """Split ``totals[g]`` samples of each group over ``num_batches`` batches of ``batch_size``.

    Raises:
        ValueError: the totals do not sum to ``num_batches * batch_size``.
    """
    totals = totals.to(torch.int64)
    if int(totals.sum()) != num_batches * batch_size:
        raise ValueError(f"group totals sum to {int(totals.sum())}, expected {num_batches} * {batch_size}")
    base = totals // num_batches
    extra = totals - base * num_batches
    return QuotaPlan(
        num_batches=num_batches,
        batch_size=batch_size,
        base=base,
        extra=extra,
        extra_start=torch.cumsum(extra, 0) - extra,
        block_start=torch.cumsum(base, 0) - base,
    )


def batch_counts(plan: QuotaPlan, rotation: int = 0) -> torch.Tensor:
    """Return the (K, G) count of each group in each batch; for tests and small inspections only."""
    batches = torch.arange(plan.num_batches).unsqueeze(1)
    start = (plan.extra_start + rotation) % plan.num_batches
    has_extra = (batches - start) % plan.num_batches < plan.extra
    return plan.base + has_extra.to(torch.int64)


def member_positions(plan: QuotaPlan, group: torch.Tensor, member: torch.Tensor, rotation: int) -> torch.Tensor:
    """Return the epoch position ``batch * B + slot`` of sample number ``member`` of ``group``.

    Args:
        plan: the quotas.
        group: (M,) group code of each sample to place.
        member: (M,) index of the sample among its group's samples, in ``0 .. T_g - 1``.
        rotation: batch that receives extra number 0; varies the extra pattern between epochs.

    Returns:
        (M,) int64 positions, distinct and covering ``0 .. K * B - 1`` when every ``(group, member)`` pair
        of the plan is given once.
    """
    num_batches = plan.num_batches
    base = plan.base[group]
    extra = plan.extra[group]
    extra_start = plan.extra_start[group]
    base_plus_one = base + 1
    safe_base = base.clamp(min=1)  # a group with base 0 has no sample in the branches that divide by it

    # The group's extras go to the cyclic batch interval [start, start + extra) mod K, which wraps past
    # batch K - 1 into [0, wrapped) when start + extra > K.
    start = (extra_start + rotation) % num_batches
    wrapped = (start + extra - num_batches).clamp(min=0)

    # Invert the cumulative count of the group's samples in batches 0 .. k - 1, one linear piece at a time.
    before_extras = start * base
    after_extras = before_extras + extra * base_plus_one
    batch_if_flat = torch.where(
        member < before_extras,
        member // safe_base,
        torch.where(
            member < after_extras,
            start + (member - before_extras) // base_plus_one,
            start + extra + (member - after_extras) // safe_base,
        ),
    )
    head_end = wrapped * base_plus_one
    middle_end = head_end + (start - wrapped) * base
    batch_if_wrapped = torch.where(
        member < head_end,
        member // base_plus_one,
        torch.where(
            member < middle_end,
            wrapped + (member - head_end) // safe_base,
            start + (member - middle_end) // base_plus_one,
        ),
    )
    batch = torch.where(wrapped > 0, batch_if_wrapped, batch_if_flat)

    # Samples of the group placed in earlier batches, and this sample's rank inside its batch's block.
    extras_before = (batch - start).clamp(min=0).minimum(extra - wrapped) + batch.minimum(wrapped)
    rank_in_block = member - (batch * base + extras_before)

    # The block starts after the base counts of lower groups and after those lower groups that hold an
    # extra in this batch: the extras t < extra_start[g] with (t + rotation) mod K == batch.
    unrotated = (batch - rotation) % num_batches
    lower_extras = (extra_start - unrotated + num_batches - 1) // num_batches
    slot = plan.block_start[group] + lower_extras + rank_in_block
    return batch * plan.batch_size + slot


def member_positions_chunked(
    plan: QuotaPlan, group: torch.Tensor, member: torch.Tensor, rotation: int, chunk_size: int = 1 << 20
) -> torch.Tensor:
    """Run ``member_positions`` over chunks, so its temporaries stay a few arrays of ``chunk_size``."""
    positions = torch.empty_like(member)
    for start in range(0, member.numel(), chunk_size):
        stop = start + chunk_size
        positions[start:stop] = member_positions(plan, group[start:stop], member[start:stop], rotation)
    return positions


def apportion(total: int, weights: list[float] | list[int], tie_order: torch.Tensor | None = None) -> torch.Tensor:
    """Split the integer ``total`` in proportion to ``weights`` by the largest-remainder method.

    Each share is the floor or the ceiling of ``total * w_g / sum(w)``, and the shares sum to ``total``.
    Exact rational arithmetic keeps float weights from rounding a share across an integer.

    Args:
        total: the integer to split.
        weights: non-negative weights, not all zero.
        tie_order: (G,) a permutation of the groups that breaks ties between equal remainders
            (earlier wins); group code order when None.
    """
    from fractions import Fraction

    exact = [Fraction(w) for w in weights]
    weight_sum = sum(exact)
    quotas = [total * w / weight_sum for w in exact]
    shares = [int(q) for q in quotas]  # floor, since every quota is non-negative
    missing = total - sum(shares)
    order = list(range(len(weights))) if tie_order is None else [int(g) for g in tie_order]
    rank = {group: position for position, group in enumerate(order)}
    by_remainder = sorted(range(len(weights)), key=lambda g: (-(quotas[g] - shares[g]), rank[g]))
    for group in by_remainder[:missing]:
        shares[group] += 1
    return torch.tensor(shares, dtype=torch.int64)
