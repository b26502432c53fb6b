"""Divergence rules evaluated on the device: each step updates running statistics and sets flag bits.

Nothing here reads a tensor on the host. The caller collects one row per step and reads the rows
in one transfer at its check interval.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

#: Bit of each rule in a row's flag value, in the order events report them.
RULE_BITS: dict[str, int] = {
    "nonfinite_loss": 1,
    "nonfinite_grad": 2,
    "loss_spike": 4,
    "loss_above_best": 8,
    "grad_norm_spike": 16,
}

#: Columns of a step row: flag bits, loss, total gradient norm, and the threshold of each rule.
ROW_FIELDS = ("flags", "loss", "grad_norm", "spike_threshold", "best_threshold", "grad_norm_threshold", "loss_scale")

# The running loss standard deviation is floored at this fraction of the running mean, so a loss
# that has settled to a near-constant value does not flag a rise of a fraction of a percent.
_MIN_RELATIVE_STD = 0.01


@dataclass(frozen=True)
class RuleConfig:
    """Thresholds of the statistical rules; the non-finite rules have none.

    Attributes:
        warmup_steps: steps of running statistics collected before any statistical rule can fire.
        spike_sigma: a loss above the running mean by this many running standard deviations is a spike.
        best_factor: a loss above this multiple of the best (lowest) running-mean loss is divergence.
        grad_norm_factor: a total gradient norm above this multiple of its running mean is an explosion.
        ema_decay: decay of the exponential moving averages (about ``1 / (1 - ema_decay)`` steps).
        patience: consecutive steps a statistical rule must hold before it fires.
    """

    warmup_steps: int = 20
    spike_sigma: float = 6.0
    best_factor: float = 10.0
    grad_norm_factor: float = 10.0
    ema_decay: float = 0.98
    patience: int = 3


class DivergenceRules:
    """Running statistics of the loss and gradient norm, kept as 0-dim tensors on one device."""

    _STATE = ("count", "loss_mean", "loss_var", "best", "grad_mean", "spike_run", "best_run", "grad_run")

    def __init__(self, config: RuleConfig, device: torch.device) -> None:
        self.config = config
        for name in self._STATE:
            setattr(self, name, torch.zeros((), dtype=torch.float32, device=device))
        self.best.fill_(float("inf"))

    def state(self) -> dict[str, torch.Tensor]:
        """Return copies of the statistics, for a rollback snapshot."""
        return {name: getattr(self, name).clone() for name in self._STATE}

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        """Copy statistics from ``state`` (as returned by :meth:`state`)."""
        for name in self._STATE:
            getattr(self, name).copy_(state[name])

    @torch.no_grad()
    def update(self, loss: torch.Tensor, grad_norm: torch.Tensor, grad_checked: torch.Tensor) -> torch.Tensor:
        """Evaluate every rule on one step and fold the step into the running statistics.

        Args:
            loss: the step's mean loss, a 0-dim float tensor.
            grad_norm: the step's total L2 gradient norm.
            grad_checked: 0-dim bool, false when a gradient scaler found inf/NaN and skips the step
                itself; the gradient rules then stay silent and the step updates no statistics.

        Returns:
            The step row: a float32 tensor with the columns named in ``ROW_FIELDS`` except the
            loss scale, which the caller appends.
        """
        config = self.config
        loss = loss.float()
        grad_norm = grad_norm.float()
        loss_finite = torch.isfinite(loss)
        grad_finite = torch.isfinite(grad_norm) | ~grad_checked
        warm = self.count >= config.warmup_steps

        std = torch.maximum(self.loss_var.sqrt(), _MIN_RELATIVE_STD * self.loss_mean.abs())
        spike_threshold = self.loss_mean + config.spike_sigma * std
        best_threshold = config.best_factor * self.best
        grad_threshold = config.grad_norm_factor * self.grad_mean

        spike = warm & loss_finite & (loss > spike_threshold)
        # The best-loss rule is undefined for a loss that is not positive.
        above_best = loss_finite & (self.best > 0) & torch.isfinite(self.best) & (loss > best_threshold)
        grad_spike = warm & grad_checked & torch.isfinite(grad_norm) & (grad_norm > grad_threshold)

        self.spike_run.copy_(torch.where(spike, self.spike_run + 1, 0.0))
        self.best_run.copy_(torch.where(above_best, self.best_run + 1, 0.0))
        self.grad_run.copy_(torch.where(grad_spike, self.grad_run + 1, 0.0))

        flags = (
            (~loss_finite).float() * RULE_BITS["nonfinite_loss"]
            + (~grad_finite).float() * RULE_BITS["nonfinite_grad"]
            + (self.spike_run >= config.patience).float() * RULE_BITS["loss_spike"]
            + (self.best_run >= config.patience).float() * RULE_BITS["loss_above_best"]
            + (self.grad_run >= config.patience).float() * RULE_BITS["grad_norm_spike"]
        )

        # Fired steps, non-finite values and steps the scaler rejected do not move the statistics. Values
        # above a threshold that has not held for `patience` steps do, or the variance would shrink.
        normal = loss_finite & grad_finite & grad_checked & (flags == 0)
        # Plain averages over the first 1 / (1 - ema_decay) steps, exponential averages after that.
        weight = torch.clamp(1.0 / (self.count + 1), min=1 - config.ema_decay)
        delta = loss - self.loss_mean
        new_mean = self.loss_mean + weight * delta
        new_var = (1 - weight) * (self.loss_var + weight * delta * delta)
        new_grad_mean = self.grad_mean + weight * (grad_norm - self.grad_mean)
        self.loss_mean.copy_(torch.where(normal, new_mean, self.loss_mean))
        self.loss_var.copy_(torch.where(normal, new_var, self.loss_var))
        self.grad_mean.copy_(torch.where(normal, new_grad_mean, self.grad_mean))
        # The best running mean counts from the end of the warm-up, when the mean covers enough steps.
        track_best = normal & (self.count + 1 >= config.warmup_steps)
        self.best.copy_(torch.where(track_best, torch.minimum(self.best, self.loss_mean), self.best))
        self.count.add_(normal.float())

        return torch.stack([flags, loss, grad_norm, spike_threshold, best_threshold, grad_threshold])
