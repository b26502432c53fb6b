"""TabularModel: network shapes per task, loss shape checks, class weights and config errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lightning_app.errors import ConfigError
from lightning_app.model import TabularModel


def test_empty_hidden_sizes_is_one_linear_layer():
    model = TabularModel(num_features=10, num_outputs=1, task="regression", hidden_sizes=[])

    layers = list(model.net)
    assert len(layers) == 1
    assert isinstance(layers[0], nn.Linear)
    assert model(torch.randn(7, 10)).shape == (7,)


def test_mlp_blocks_follow_options():
    model = TabularModel(
        num_features=4, num_outputs=3, task="multiclass", hidden_sizes=[8, 6], activation="tanh", dropout=0.2, norm="batch"
    )

    kinds = [type(layer) for layer in model.net]
    assert kinds == [nn.Linear, nn.BatchNorm1d, nn.Tanh, nn.Dropout, nn.Linear, nn.BatchNorm1d, nn.Tanh, nn.Dropout, nn.Linear]
    assert model(torch.randn(5, 4)).shape == (5, 3)


def test_binary_uses_two_logits_and_cross_entropy():
    model = TabularModel(num_features=3, num_outputs=2, task="binary")
    logits = model(torch.randn(6, 3))
    targets = torch.tensor([0, 1, 1, 0, 1, 0])

    assert logits.shape == (6, 2)
    expected = nn.functional.cross_entropy(logits, targets)
    assert model.compute_loss(logits, targets).item() == pytest.approx(expected.item())


def test_column_target_cannot_broadcast():
    model = TabularModel(num_features=2, num_outputs=1, task="regression")
    predictions = model(torch.randn(4, 2))

    with pytest.raises(ValueError, match=r"prediction shape \(4,\) does not match target shape \(4, 1\)"):
        model.compute_loss(predictions, torch.randn(4, 1))


def test_classification_target_shape_checked():
    model = TabularModel(num_features=2, num_outputs=3, task="multiclass")
    logits = model(torch.randn(4, 2))

    with pytest.raises(ValueError, match="expected \\(batch, classes\\) logits"):
        model.compute_loss(logits, torch.zeros(4, 1, dtype=torch.long))


def test_huber_loss_for_regression():
    model = TabularModel(num_features=2, num_outputs=1, task="regression", loss="huber", huber_delta=0.5)
    predictions, targets = torch.tensor([0.0, 3.0]), torch.tensor([0.1, 0.0])

    expected = nn.functional.huber_loss(predictions, targets, delta=0.5)
    assert model.compute_loss(predictions, targets).item() == pytest.approx(expected.item())


def test_balanced_class_weights_from_counts():
    model = TabularModel(num_features=2, num_outputs=2, task="binary", class_weights="balanced", class_counts=[900, 100])

    assert model.class_weight.tolist() == pytest.approx([1000 / 1800, 1000 / 200])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"task": "regression", "loss": "cross_entropy"}, "does not fit task 'regression'"),
        ({"task": "multiclass", "num_outputs": 3, "loss": "mse"}, "does not fit task 'multiclass'"),
        ({"task": "ranking"}, "model.task is 'ranking'"),
        ({"task": "multiclass", "num_outputs": 3, "class_weights": [1.0, 2.0]}, "has 2 values but there are 3"),
        ({"hidden_sizes": [4, 0]}, "model.hidden_sizes is \\[4, 0\\]"),
        ({"dropout": 1.0}, "model.dropout is 1.0"),
    ],
)
def test_invalid_options_raise_config_error(kwargs, message):
    arguments = {"num_features": 2, "num_outputs": 1, "task": "regression", **kwargs}

    with pytest.raises(ConfigError, match=message):
        TabularModel(**arguments)


def test_predictions_in_original_units():
    model = TabularModel(num_features=1, num_outputs=1, task="regression", target_mean=100.0, target_std=10.0)
    with torch.no_grad():
        model.net[0].weight.fill_(2.0)
        model.net[0].bias.fill_(0.5)

    predictions = model.predict_step((torch.tensor([[1.0], [-1.0]]), torch.zeros(2)), 0)
    assert predictions.tolist() == pytest.approx([125.0, 85.0])
