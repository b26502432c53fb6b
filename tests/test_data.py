"""Data layer: sources, split, standardisation, batch fetching and each bad-data error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from lightning_app.data import (
    FileSource,
    GaussianClasses,
    LinearTeacher,
    NoiseRegression,
    NpySource,
    TabularDataModule,
)
from lightning_app.data.split import split_indices, standardisation_stats
from lightning_app.errors import ConfigError


def _write_csv(path: Path, frame: pd.DataFrame) -> str:
    frame.to_csv(path, index=False)
    return str(path)


def _small_frame(rows: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {"a": rng.normal(size=rows), "b": rng.normal(size=rows), "label": np.arange(rows) % 2}
    )


def test_shipped_datasets_load_with_expected_shapes(repo_root):
    expected = {"diabetes": (442, 10, "regression"), "breast_cancer": (569, 30, "binary"), "digits": (1797, 64, "multiclass")}
    for name, (rows, features, task) in expected.items():
        data = TabularDataModule(FileSource(str(repo_root / "data" / f"{name}.csv")))
        data.setup("fit")

        total = len(data.train_set) + len(data.val_set) + len(data.test_set)
        assert total == rows, name
        assert data.num_features == features, name
        assert data.task_name == task, name


def test_split_is_stratified_and_seeded():
    labels = np.repeat([0, 1, 2], [500, 300, 7])

    train, val, test = split_indices(labels.size, 0.2, 0.1, seed=3, labels=labels)
    again = split_indices(labels.size, 0.2, 0.1, seed=3, labels=labels)
    other_seed = split_indices(labels.size, 0.2, 0.1, seed=4, labels=labels)

    assert np.array_equal(np.sort(np.concatenate([train, val, test])), np.arange(labels.size))
    assert np.bincount(labels[val], minlength=3).tolist() == [100, 60, 1]
    assert np.bincount(labels[test], minlength=3).tolist() == [50, 30, 1]
    assert all(np.array_equal(a, b) for a, b in zip((train, val, test), again))
    assert not np.array_equal(val, other_seed[1])


def test_standardisation_uses_training_rows_only():
    data = TabularDataModule(LinearTeacher(num_samples=500, num_features=3, seed=1), seed=2)
    data.setup("fit")
    raw = LinearTeacher(num_samples=500, num_features=3, seed=1).load()
    train_rows, val_rows, _ = split_indices(500, 0.2, 0.2, seed=2)

    mean, std = raw.features[train_rows].mean(axis=0), raw.features[train_rows].std(axis=0)
    expected_val = (raw.features[val_rows] - mean) / std
    assert torch.allclose(data.val_set.features, torch.from_numpy(expected_val).float(), atol=1e-5)
    assert torch.allclose(data.train_set.features.mean(dim=0), torch.zeros(3), atol=1e-5)
    assert not torch.allclose(data.val_set.features.mean(dim=0), torch.zeros(3), atol=1e-3)
    assert data.target_mean == pytest.approx(raw.target[train_rows].mean())
    assert data.train_set.targets.mean().item() == pytest.approx(0.0, abs=1e-5)


def test_chunked_stats_match_numpy():
    features = np.random.default_rng(0).normal(1000.0, 0.01, size=(1001, 4))
    rows = np.arange(0, 1001, 2)

    mean, std = standardisation_stats(features, rows, chunk_rows=37)
    assert np.allclose(mean, features[rows].mean(axis=0))
    assert np.allclose(std, features[rows].std(axis=0), rtol=1e-6)


def test_batch_fetched_by_index_tensor():
    data = TabularDataModule(GaussianClasses(counts=(60, 40), num_features=3), batch_size=16)
    data.setup("fit")
    index = torch.tensor([5, 0, 17])

    features, targets = data.train_set.__getitems__(index)
    assert torch.equal(features, data.train_set.features[index])
    assert torch.equal(targets, data.train_set.targets[index])
    batches = list(data.train_dataloader())
    assert [len(batch[1]) for batch in batches] == [16, 16, 16, 12]
    assert batches[0][1].dtype == torch.int64


def test_npy_memmap_matches_in_memory(tmp_path):
    source = LinearTeacher(num_samples=300, num_features=5, seed=0)
    table = source.load()
    np.save(tmp_path / "x.npy", table.features)
    np.save(tmp_path / "y.npy", table.target)
    in_memory = TabularDataModule(source)
    mapped = TabularDataModule(NpySource(str(tmp_path / "x.npy"), str(tmp_path / "y.npy")))
    in_memory.setup("fit")
    mapped.setup("fit")
    index = torch.tensor([40, 3, 59, 3])

    expected_x, expected_y = in_memory.val_set.__getitems__(index)
    got_x, got_y = mapped.val_set.__getitems__(index)
    assert torch.allclose(got_x, expected_x, atol=1e-5)
    assert torch.equal(got_y, expected_y)


def test_noise_regression_is_independent_standard_normal():
    table = NoiseRegression(num_samples=20000, num_features=4, seed=0).load()

    assert abs(table.features.mean()) < 0.02
    assert abs(table.target.std() - 1.0) < 0.02
    assert np.abs(np.corrcoef(table.features.T, table.target)[-1, :-1]).max() < 0.03


def test_gaussian_classes_counts_and_groups():
    table = GaussianClasses(counts=(900, 100), num_features=4).load()

    assert np.bincount(table.target).tolist() == [900, 100]
    assert np.array_equal(table.groups, table.target)


def test_text_labels_become_classes(tmp_path):
    frame = _small_frame()
    frame["label"] = np.where(frame["label"] == 1, "benign", "malignant")
    data = TabularDataModule(FileSource(_write_csv(tmp_path / "t.csv", frame), target="label"))
    data.setup("fit")

    assert data.task_name == "binary"
    assert data.class_names == ["benign", "malignant"]


def _error_for(source, **datamodule_options) -> str:
    with pytest.raises(ConfigError) as caught:
        data = TabularDataModule(source, **datamodule_options)
        data.setup("fit")
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_missing_file_error():
    message = _error_for(FileSource("nowhere/data.csv"))
    assert "data file not found: 'nowhere/data.csv'" in message


def test_unknown_target_column_error(tmp_path):
    message = _error_for(FileSource(_write_csv(tmp_path / "t.csv", _small_frame()), target="outcome"))
    assert "column 'outcome'" in message
    assert "available columns: a, b, label" in message


def test_non_numeric_feature_error(tmp_path):
    frame = _small_frame().astype({"b": object})
    frame.loc[7, "b"] = "n/a?"
    message = _error_for(FileSource(_write_csv(tmp_path / "t.csv", frame), target="label"))
    assert "feature column 'b'" in message
    assert "'n/a?' at row 7 (line 9)" in message


@pytest.mark.parametrize("bad_value", [np.nan, np.inf])
def test_non_finite_feature_error(tmp_path, bad_value):
    frame = _small_frame()
    frame.loc[12, "a"] = bad_value
    message = _error_for(FileSource(_write_csv(tmp_path / "t.csv", frame), target="label"))
    assert "feature column 'a' has a NaN or Inf value at row 12 (line 14)" in message


def test_non_finite_target_error(tmp_path):
    frame = _small_frame()
    frame["y"] = 1.5
    frame.loc[3, "y"] = np.nan
    message = _error_for(FileSource(_write_csv(tmp_path / "t.csv", frame), target="y"))
    assert "target column 'y' has a NaN or Inf value at row 3 (line 5)" in message


def test_single_class_error(tmp_path):
    frame = _small_frame()
    frame["label"] = 1
    message = _error_for(FileSource(_write_csv(tmp_path / "t.csv", frame), target="label"), task="binary")
    assert "has a single class ('1')" in message


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"val_fraction": 0.0}, "data.val_fraction is 0.0"),
        ({"test_fraction": -0.1}, "data.test_fraction is -0.1"),
        ({"val_fraction": 0.6, "test_fraction": 0.4}, "expected below 1"),
        ({"batch_size": 0}, "data.batch_size is 0"),
        ({"batch_size": -4}, "data.batch_size is -4"),
    ],
)
def test_option_errors(options, expected):
    message = _error_for(NoiseRegression(num_samples=50), **options)
    assert expected in message


def test_npy_non_finite_error(tmp_path):
    features = np.zeros((10, 2), dtype=np.float32)
    features[6, 1] = np.inf
    np.save(tmp_path / "x.npy", features)
    np.save(tmp_path / "y.npy", np.zeros(10))
    message = _error_for(NpySource(str(tmp_path / "x.npy"), str(tmp_path / "y.npy")))
    assert "feature column 'x1' has a NaN or Inf value at row 6" in message
