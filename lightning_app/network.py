"""Build the linear model or MLP that the LightningModule trains."""

from __future__ import annotations

from typing import Literal

from torch import nn

from lightning_app.errors import ConfigError

Activation = Literal["relu", "gelu", "tanh", "silu"]
Norm = Literal["batch", "layer"]

_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "silu": nn.SiLU}


def build_network(
    num_features: int,
    num_outputs: int,
    hidden_sizes: list[int],
    activation: Activation = "relu",
    dropout: float = 0.0,
    norm: Norm | None = None,
) -> nn.Sequential:
    """Return ``Linear`` alone when ``hidden_sizes`` is empty, else an MLP.

    Each hidden block is Linear, then the optional norm, the activation and optional dropout.
    BatchNorm makes a sample's output depend on the other samples of its batch, which is one way
    batch training can differ from per-sample training.
    """
    if num_features < 1 or num_outputs < 1:
        raise ConfigError(f"model needs at least one feature and one output, got {num_features} and {num_outputs}")
    if any(size < 1 for size in hidden_sizes):
        raise ConfigError(f"model.hidden_sizes is {hidden_sizes}, expected positive layer widths or []")
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"model.dropout is {dropout}, expected a probability in [0, 1)")
    if activation not in _ACTIVATIONS:
        raise ConfigError(f"model.activation is {activation!r}, expected one of {', '.join(_ACTIVATIONS)}")

    layers: list[nn.Module] = []
    width = num_features
    for size in hidden_sizes:
        layers.append(nn.Linear(width, size))
        if norm == "batch":
            layers.append(nn.BatchNorm1d(size))
        elif norm == "layer":
            layers.append(nn.LayerNorm(size))
        layers.append(_ACTIVATIONS[activation]())
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = size
    layers.append(nn.Linear(width, num_outputs))
    return nn.Sequential(*layers)
