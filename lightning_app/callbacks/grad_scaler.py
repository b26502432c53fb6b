"""Read the fp16 gradient scaler of a Trainer without host synchronisation."""

from __future__ import annotations

import torch
from lightning.pytorch import Trainer
from torch.optim import Optimizer


def grad_scaler(trainer: Trainer) -> torch.amp.GradScaler | None:
    """Return the enabled GradScaler of the trainer's precision plugin, or None (bf16, fp32)."""
    scaler = getattr(trainer.precision_plugin, "scaler", None)
    return scaler if scaler is not None and scaler.is_enabled() else None


def scaler_found_inf(scaler: torch.amp.GradScaler, optimizer: Optimizer, device: torch.device) -> torch.Tensor:
    """Return a 0-dim bool: did ``scaler.unscale_`` find inf/NaN gradients for ``optimizer`` this step?

    NOTE: reads GradScaler's private per-optimizer state (torch 2.x); without it, no step counts as
    skipped by the scaler.
    """
    state = scaler._per_optimizer_states.get(id(optimizer), {})
    found = state.get("found_inf_per_device", {})
    total = torch.zeros((), device=device)
    for value in found.values():
        total = total + value.to(device).sum()
    return total > 0
