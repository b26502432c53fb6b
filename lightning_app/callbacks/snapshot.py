"""In-memory copies of model and optimizer state, restored in full or under a device-side mask."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer


def _state_tensors(module: nn.Module, optimizers: list[Optimizer]) -> Iterator[torch.Tensor]:
    """Yield every tensor that an optimizer step or a training forward pass can change.

    Those are the parameters, the floating-point buffers (for example BatchNorm running
    statistics) and the tensors in each optimizer's per-parameter state (momentum, Adam moments
    and step counters).
    """
    yield from module.parameters()
    for buffer in module.buffers():
        if buffer.is_floating_point():
            yield buffer
    for optimizer in optimizers:
        for param_state in optimizer.state.values():
            for value in param_state.values():
                if isinstance(value, torch.Tensor):
                    yield value


class StepGuard:
    """Undo one optimizer step on the device when a flag is set, without reading the flag on the host.

    ``save`` copies the state before the step and ``undo_if`` puts it back with ``torch.where``,
    so a diverged step leaves the weights, buffers and optimizer state as they were before it.

    NOTE: optimizer state that appears during the step (the first step of Adam or of SGD with
    momentum) has no saved copy and is reset to zeros when undone, which matches a fresh state
    for these optimizers. State stored as Python numbers, or on another device than the flag
    (Adam's step counter stays on the CPU unless ``capturable=True``), is not undone.
    """

    def __init__(self) -> None:
        self._saved: dict[int, torch.Tensor] = {}

    def save(self, module: nn.Module, optimizers: list[Optimizer]) -> None:
        """Copy the current state into reused buffers."""
        seen: set[int] = set()
        for tensor in _state_tensors(module, optimizers):
            key = id(tensor)
            seen.add(key)
            buffer = self._saved.get(key)
            if buffer is None or buffer.shape != tensor.shape or buffer.dtype != tensor.dtype:
                self._saved[key] = tensor.detach().clone()
            else:
                buffer.copy_(tensor.detach())
        for key in set(self._saved) - seen:
            del self._saved[key]

    @torch.no_grad()
    def undo_if(self, flag: torch.Tensor, module: nn.Module, optimizers: list[Optimizer]) -> None:
        """Restore the saved state where ``flag`` (a 0-dim bool tensor) is true; a device-only operation."""
        for tensor in _state_tensors(module, optimizers):
            if tensor.device != flag.device:
                continue
            saved = self._saved.get(id(tensor))
            if saved is None or saved.shape != tensor.shape or saved.dtype != tensor.dtype:
                # A tensor created by this step (or a reused id): undoing the step means zeros.
                saved = torch.zeros_like(tensor)
            tensor.copy_(torch.where(flag, saved, tensor))


@dataclass
class Snapshot:
    """A full copy of the training state at one healthy step, kept in memory for rollback."""

    step: int
    module_state: dict[str, torch.Tensor]
    optimizer_states: list[dict[str, Any]]
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def take(cls, step: int, module: nn.Module, optimizers: list[Optimizer], extra: dict[str, Any]) -> Snapshot:
        """Copy the module's state dict, the optimizers' state dicts and ``extra`` (device tensors)."""
        module_state = {name: value.detach().clone() for name, value in module.state_dict().items()}
        optimizer_states = [copy.deepcopy(optimizer.state_dict()) for optimizer in optimizers]
        return cls(step, module_state, optimizer_states, copy.deepcopy(extra))

    def restore(self, module: nn.Module, optimizers: list[Optimizer]) -> None:
        """Load the copied state back; the optimizers' learning rates are restored too."""
        module.load_state_dict(self.module_state)
        for optimizer, state in zip(optimizers, self.optimizer_states):
            optimizer.load_state_dict(copy.deepcopy(state))
