"""Data sources: files on disk. Each source's ``load()`` returns a checked ``Table``.

Synthetic generators live in ``synthetic.py``; both kinds derive from ``DataSource`` so that a config
picks one with ``data.source.class_path``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np
import pandas as pd

from lightning_app.data.table import Table, check_finite
from lightning_app.errors import ConfigError


class DataSource(ABC):
    """Something that produces a whole dataset as a ``Table``."""

    @abstractmethod
    def load(self) -> Table:
        """Load, check and return the dataset."""


def _existing_file(path: str | Path, option: str) -> Path:
    file = Path(path)
    if not file.is_file():
        raise ConfigError(
            f"data file not found: '{file}' (from {option}); check the path, which is resolved "
            f"from the current directory '{Path.cwd()}'"
        )
    return file


def _csv_row(index: int) -> str:
    # A CSV's header is line 1, so data row 0 is line 2 in an editor.
    return f"row {index} (line {index + 2})"


class FileSource(DataSource):
    """A CSV or Parquet file with one row per sample.

    Args:
        path: the ``.csv`` or ``.parquet`` file.
        target: the target column's name.
        features: feature column names; by default every column except the target and the group.
        group: optional column of group ids for batch samplers that compose batches by group.
    """

    def __init__(
        self,
        path: str,
        target: str = "target",
        features: list[str] | None = None,
        group: str | None = None,
    ) -> None:
        self.path = path
        self.target = target
        self.features = features
        self.group = group

    def _read(self) -> pd.DataFrame:
        file = _existing_file(self.path, "data.source.init_args.path")
        suffix = file.suffix.lower()
        try:
            if suffix == ".csv":
                return pd.read_csv(file)
            if suffix in (".parquet", ".pq"):
                return pd.read_parquet(file)
        except (ValueError, OSError, pd.errors.ParserError) as error:
            raise ConfigError(f"could not read '{file}': {error}; check that it is a valid {suffix} file") from error
        raise ConfigError(
            f"unsupported data file type '{suffix}' for '{file}'; use a .csv or .parquet file, "
            "or NpySource for .npy arrays"
        )

    def _numeric_column(self, frame: pd.DataFrame, name: str, role: str) -> np.ndarray:
        values = pd.to_numeric(frame[name], errors="coerce")
        bad = values.isna() & frame[name].notna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise ConfigError(
                f"{self.path}: {role} column '{name}' has a non-numeric value "
                f"{frame[name].iloc[row]!r} at {_csv_row(row)}; convert it to a number or drop the column"
            )
        return values.to_numpy(dtype=np.float64)

    def _require_columns(self, frame: pd.DataFrame, names: list[str], option: str) -> None:
        missing = [name for name in names if name not in frame.columns]
        if missing:
            raise ConfigError(
                f"column {missing[0]!r} (from {option}) not found in {self.path}; "
                f"available columns: {', '.join(map(str, frame.columns))}"
            )

    def load(self) -> Table:
        frame = self._read()
        self._require_columns(frame, [self.target], "data.source.init_args.target")
        if self.group is not None:
            self._require_columns(frame, [self.group], "data.source.init_args.group")
        if self.features is not None:
            self._require_columns(frame, list(self.features), "data.source.init_args.features")
            feature_names = list(self.features)
        else:
            excluded = {self.target, self.group}
            feature_names = [str(name) for name in frame.columns if name not in excluded]
        if not feature_names:
            raise ConfigError(f"{self.path} has no feature columns besides the target '{self.target}'")

        features = np.stack([self._numeric_column(frame, name, "feature") for name in feature_names], axis=1)
        target_column = frame[self.target]
        if pd.api.types.is_numeric_dtype(target_column):
            target = target_column.to_numpy(dtype=np.float64)
        else:
            # Text labels such as "malignant" are classes; missing ones are caught below.
            missing = target_column.isna().to_numpy()
            if missing.any():
                row = int(np.flatnonzero(missing)[0])
                raise ConfigError(
                    f"{self.path}: target column '{self.target}' is empty at {_csv_row(row)}; "
                    "remove that row before training"
                )
            target = target_column.astype(str).to_numpy()

        groups = None
        if self.group is not None:
            _, groups = np.unique(frame[self.group].astype(str).to_numpy(), return_inverse=True)
            groups = groups.astype(np.int64)

        table = Table(
            features=features.astype(np.float32),
            target=target,
            feature_names=feature_names,
            origin=str(self.path),
            target_name=self.target,
            groups=groups,
            task_hint=None if pd.api.types.is_numeric_dtype(target_column) else "classification",
        )
        check_finite(table, _csv_row)
        return table


class NpySource(DataSource):
    """Features and target stored as NumPy ``.npy`` files.

    The features file is memory-mapped, so it may be larger than RAM: batches are read from disk and
    standardised as they are fetched.

    Args:
        features_path: ``.npy`` file with a (N, F) numeric array.
        target_path: ``.npy`` file with a (N,) array.
        group_path: optional ``.npy`` file with (N,) integer group ids.
        mmap: memory-map the features file instead of reading it into RAM.
    """

    def __init__(
        self,
        features_path: str,
        target_path: str,
        group_path: str | None = None,
        mmap: bool = True,
    ) -> None:
        self.features_path = features_path
        self.target_path = target_path
        self.group_path = group_path
        self.mmap = mmap

    def load(self) -> Table:
        features_file = _existing_file(self.features_path, "data.source.init_args.features_path")
        target_file = _existing_file(self.target_path, "data.source.init_args.target_path")
        features = np.load(features_file, mmap_mode="r" if self.mmap else None)
        if not np.issubdtype(features.dtype, np.number):
            raise ConfigError(
                f"{features_file} has dtype {features.dtype}, expected a numeric array; save it as float32"
            )
        target = np.load(target_file)
        groups = None
        if self.group_path is not None:
            groups = np.load(_existing_file(self.group_path, "data.source.init_args.group_path")).astype(np.int64)
        names = [f"x{column}" for column in range(features.shape[1])] if features.ndim == 2 else []
        table = Table(
            features=features,
            target=target,
            feature_names=names,
            origin=str(features_file),
            target_name=str(target_file),
            groups=groups,
        )
        check_finite(table)
        return table
