"""Per-sample versus whole-batch comparisons of a LightningModule's training loss and gradients.

These functions run ``training_step`` on a copy of the module, so they change no weights, buffers,
metrics or gradients of the module being trained.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from lightning.pytorch import LightningModule
from torch import nn

_TINY = 1e-12


@dataclass
class ProbeResult:
    """Measured relative errors; NaN where a comparison could not be made.

    Attributes:
        num_samples: samples in the probed batch.
        batch_loss: the loss of the whole batch.
        mean_sample_loss: the mean of the losses of each sample run alone.
        loss_error: ``|batch_loss - mean_sample_loss| / |mean_sample_loss|``.
        grad_error: relative L2 distance between the batch gradient and the mean per-sample gradient.
        mixing_error: relative part of the batch loss's input gradient that is not explained by each
            sample's own loss (0 when samples are independent); NaN without floating-point inputs.
    """

    num_samples: int
    batch_loss: float
    mean_sample_loss: float
    loss_error: float
    grad_error: float
    mixing_error: float


def batch_size_of(batch: Any) -> int | None:
    """Return the leading dimension of the first tensor in ``batch``, or None without tensors."""
    if isinstance(batch, torch.Tensor):
        return batch.shape[0] if batch.ndim > 0 else None
    if isinstance(batch, dict):
        batch = list(batch.values())
    if isinstance(batch, (list, tuple)):
        for item in batch:
            size = batch_size_of(item)
            if size is not None:
                return size
    return None


def map_batch(batch: Any, size: int, function: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """Apply ``function`` to every tensor in ``batch`` whose leading dimension is ``size``."""
    if isinstance(batch, torch.Tensor):
        return function(batch) if batch.ndim > 0 and batch.shape[0] == size else batch
    if isinstance(batch, dict):
        return {key: map_batch(value, size, function) for key, value in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(map_batch(value, size, function) for value in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(map_batch(value, size, function) for value in batch)
    return batch


def detached_copy(module: LightningModule) -> LightningModule:
    """Deep-copy ``module`` and make ``log`` calls no-ops on the copy.

    The trainer and datamodule are shared, not copied (they hold data loader iterators, which cannot
    be copied), so the copy still reads attributes such as ``self.global_step``.
    """
    trainer = module._trainer
    shared = [trainer, getattr(trainer, "datamodule", None)] if trainer is not None else []
    memo = {id(item): item for item in shared if item is not None}
    clone = copy.deepcopy(module, memo)
    clone.log = lambda *args, **kwargs: None  # type: ignore[method-assign]
    clone.log_dict = lambda *args, **kwargs: None  # type: ignore[method-assign]
    return clone


def set_eval(module: nn.Module, types: tuple[type[nn.Module], ...]) -> None:
    """Put every submodule of one of ``types`` into eval mode."""
    for submodule in module.modules():
        if isinstance(submodule, types):
            submodule.eval()


def _training_loss(module: LightningModule, batch: Any) -> torch.Tensor | None:
    output = module.training_step(batch, 0)
    if isinstance(output, dict):
        output = output.get("loss")
    return output if isinstance(output, torch.Tensor) and output.numel() == 1 else None


def _relative(difference: torch.Tensor, reference: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(difference) / torch.linalg.vector_norm(reference).clamp_min(_TINY))


def _leaf_batch(batch: Any, size: int) -> tuple[Any, list[torch.Tensor]]:
    """Return a copy of the batch whose floating-point tensors are fresh leaves, and those leaves."""
    inputs: list[torch.Tensor] = []

    def as_leaf(tensor: torch.Tensor) -> torch.Tensor:
        if not tensor.is_floating_point():
            return tensor
        leaf = tensor.detach().clone().requires_grad_(True)
        inputs.append(leaf)
        return leaf

    return map_batch(batch, size, as_leaf), inputs


def _loss_and_grads(
    module: LightningModule, batch: Any, size: int
) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]] | None:
    """Run one training step; return the loss, the parameter gradients and the input gradients."""
    leaf_batch, inputs = _leaf_batch(batch, size)
    loss = _training_loss(module, leaf_batch)
    if loss is None:
        return None
    params = [param for param in module.parameters() if param.requires_grad]
    grads = torch.autograd.grad(loss.reshape(()), params + inputs, allow_unused=True)
    param_grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads[: len(params)])]
    input_grads = [torch.zeros_like(x) if g is None else g for x, g in zip(inputs, grads[len(params) :])]
    return loss.detach().reshape(()).float(), param_grads, input_grads


def probe(module: LightningModule, batch: Any, size: int) -> ProbeResult | None:
    """Compare the whole-batch loss and gradients of ``module`` with those of each sample run alone.

    Returns None when ``training_step`` does not return a scalar loss tensor.
    """
    whole = _loss_and_grads(module, batch, size)
    if whole is None:
        return None
    batch_loss, batch_param_grads, batch_input_grads = whole

    sample_losses: list[torch.Tensor] = []
    param_grad_sum = [torch.zeros_like(grad) for grad in batch_param_grads]
    alone_input_grads: list[list[torch.Tensor]] = [[] for _ in batch_input_grads]
    for index in range(size):
        single = map_batch(batch, size, lambda tensor, index=index: tensor[index : index + 1])
        result = _loss_and_grads(module, single, 1)
        if result is None:
            return None
        loss, param_grads, input_grads = result
        sample_losses.append(loss)
        for total, grad in zip(param_grad_sum, param_grads):
            total.add_(grad)
        for collected, grad in zip(alone_input_grads, input_grads):
            collected.append(grad)

    mean_loss = torch.stack(sample_losses).mean()
    loss_error = float((batch_loss - mean_loss).abs() / mean_loss.abs().clamp_min(_TINY))
    flat_batch = torch.cat([grad.flatten() for grad in batch_param_grads]) if batch_param_grads else torch.zeros(0)
    flat_mean = torch.cat([(total / size).flatten() for total in param_grad_sum]) if param_grad_sum else torch.zeros(0)
    grad_error = _relative(flat_batch - flat_mean, flat_mean) if flat_mean.numel() else float("nan")

    mixing_error = float("nan")
    if batch_input_grads:
        batch_flat = torch.cat([grad.flatten() for grad in batch_input_grads])
        alone_flat = torch.cat([torch.cat(collected).flatten() for collected in alone_input_grads])
        # For independent samples the batch input gradients are each sample's own times one scale (1/B for
        # a mean, 1 for a sum). The least-squares scale removes the reduction, and the residual is mixing.
        scale = (batch_flat @ alone_flat) / (alone_flat @ alone_flat).clamp_min(_TINY)
        if float(alone_flat.abs().max()) > 0 or float(batch_flat.abs().max()) > 0:
            mixing_error = _relative(batch_flat - scale * alone_flat, batch_flat)
    return ProbeResult(size, float(batch_loss), float(mean_loss), loss_error, grad_error, mixing_error)


def cross_sample_curvature(module: LightningModule, batch: Any, size: int) -> float:
    """Measure how much the input gradient of sample 0 reacts to the other samples' inputs.

    A loss that is a sum of per-sample terms has a block-diagonal input Hessian. This returns
    ``|H v|`` on the other samples over ``|H v|`` on sample 0, for a random ``v`` that perturbs
    only sample 0's inputs; 0 means no mixing. Returns NaN when the loss is linear in the inputs
    or has no floating-point inputs.
    """
    leaf_batch, inputs = _leaf_batch(batch, size)
    loss = _training_loss(module, leaf_batch)
    if loss is None or not inputs:
        return float("nan")
    grads = torch.autograd.grad(loss.reshape(()), inputs, create_graph=True, allow_unused=True)
    pairs = [(x, g) for x, g in zip(inputs, grads) if g is not None and g.requires_grad]
    if not pairs:
        return float("nan")
    directions = []
    for x, _ in pairs:
        direction = torch.zeros_like(x)
        direction[0] = torch.randn_like(x[0])
        directions.append(direction)
    product = sum((g * v).sum() for (_, g), v in zip(pairs, directions))
    hessian_vector = torch.autograd.grad(product, [x for x, _ in pairs], allow_unused=True)
    own = torch.zeros(())
    others = torch.zeros(())
    for hv in hessian_vector:
        if hv is None:
            continue
        own = own + hv[0].float().pow(2).sum().cpu()
        others = others + hv[1:].float().pow(2).sum().cpu()
    if float(own + others) <= _TINY:
        return float("nan")
    return float(others.sqrt() / own.sqrt().clamp_min(_TINY))
