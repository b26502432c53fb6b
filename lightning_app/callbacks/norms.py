"""L2 norms of gradients and weights computed on the device, without reading them on the host."""

from __future__ import annotations

from collections.abc import Iterable

import torch


def tensor_norms(tensors: Iterable[torch.Tensor], device: torch.device) -> torch.Tensor:
    """Return the L2 norm of each tensor as one float32 vector on ``device``."""
    norms = [torch.linalg.vector_norm(tensor.detach(), 2, dtype=torch.float32).to(device) for tensor in tensors]
    if not norms:
        return torch.zeros(0, device=device)
    return torch.stack(norms)


def total_norm(norms: torch.Tensor) -> torch.Tensor:
    """Combine per-tensor L2 norms into the norm of all tensors viewed as one vector.

    This is how ``torch.nn.utils.clip_grad_norm_`` (torch 2.x) builds the value it returns.
    """
    return torch.linalg.vector_norm(norms, 2)


def total_grad_norm(parameters: Iterable[torch.nn.Parameter], device: torch.device) -> torch.Tensor:
    """Return the total L2 norm of all existing gradients; 0 when no parameter has one."""
    grads = [param.grad for param in parameters if param.grad is not None]
    return total_norm(tensor_norms(grads, device))
