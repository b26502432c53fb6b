"""GradNormMonitor: gradient, weight and update norms logged to TensorBoard every N optimizer steps."""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch.optim import Optimizer
from typing_extensions import override

from lightning_app.callbacks.norms import tensor_norms, total_norm
from lightning_app.errors import ConfigError


class GradNormMonitor(Callback):
    """Log gradient norms, weight norms and update-to-weight ratios under one prefix.

    On every ``every_n_steps``-th optimizer step (default: the trainer's ``log_every_n_steps``) it logs,
    with the default prefix ``norms``:

    - ``norms/grad_total``: the L2 norm of all gradients viewed as one vector, the value that
      ``torch.nn.utils.clip_grad_norm_`` returns for the same gradients;
    - ``norms/grad/<name>``: the gradient norm of each parameter tensor, for example ``net.0.weight``;
    - ``norms/weight/<name>``: the norm of each parameter tensor before the step;
    - ``norms/update_ratio/<name>``: the norm of the update the optimizer applied divided by the norm of
      the weights before it (0 when the step was skipped, for example by the fp16 gradient scaler).

    Gradient norms are read in ``on_before_optimizer_step``, which Lightning (2.6) calls after AMP
    unscaling and before gradient clipping, so they are unscaled and pre-clip. With a fused optimizer
    that unscales inside its step the gradients are still scaled there. All values are computed on the
    device and moved to the host together, once per logging step.
    """

    def __init__(self, every_n_steps: int | None = None, prefix: str = "norms", per_parameter: bool = True) -> None:
        """Configure the logging interval (optimizer steps; null for log_every_n_steps), tag prefix and detail."""
        super().__init__()
        if every_n_steps is not None and every_n_steps < 1:
            raise ConfigError(
                f"GradNormMonitor.every_n_steps is {every_n_steps}; use an integer >= 1 or null for log_every_n_steps"
            )
        if not prefix or prefix.endswith("/"):
            raise ConfigError(
                f"GradNormMonitor.prefix is {prefix!r}; use a non-empty tag prefix without a trailing '/', such as norms"
            )
        self.every_n_steps = every_n_steps
        self.prefix = prefix
        self.per_parameter = per_parameter
        self._pending: dict[str, Any] | None = None

    def _interval(self, trainer: Trainer) -> int:
        return self.every_n_steps or max(1, trainer.log_every_n_steps)

    @override
    def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule, optimizer: Optimizer) -> None:
        if trainer.global_step % self._interval(trainer) != 0 or not trainer.loggers:
            self._pending = None
            return
        device = pl_module.device
        named = [(name, param) for name, param in pl_module.named_parameters() if param.grad is not None]
        grad_norms = tensor_norms([param.grad for _, param in named], device)
        self._pending = {
            "step": trainer.global_step,
            "names": [name for name, _ in named],
            "params": [param for _, param in named],
            "before": [param.detach().clone() for _, param in named],
            "grad_norms": grad_norms,
            "grad_total": total_norm(grad_norms),
        }

    @override
    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        pending = self._pending
        if pending is None:
            return
        self._pending = None
        device = pl_module.device
        before = pending["before"]
        weight_norms = tensor_norms(before, device)
        update_norms = tensor_norms([param.detach() - old for param, old in zip(pending["params"], before)], device)
        ratios = update_norms / weight_norms.clamp_min(torch.finfo(torch.float32).tiny)
        values = torch.cat([pending["grad_total"].reshape(1), pending["grad_norms"], weight_norms, ratios]).tolist()

        prefix = self.prefix
        metrics = {f"{prefix}/grad_total": values[0]}
        if self.per_parameter:
            count = len(pending["names"])
            for index, name in enumerate(pending["names"]):
                metrics[f"{prefix}/grad/{name}"] = values[1 + index]
                metrics[f"{prefix}/weight/{name}"] = values[1 + count + index]
                metrics[f"{prefix}/update_ratio/{name}"] = values[1 + 2 * count + index]
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=pending["step"])
