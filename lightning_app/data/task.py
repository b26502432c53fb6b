"""Decide the learning task from the target column, and encode class labels as 0..C-1."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from lightning.pytorch.utilities import rank_zero_info

from lightning_app.data.table import Table
from lightning_app.errors import ConfigError

TaskName = Literal["auto", "regression", "binary", "multiclass"]

# An integer-valued target with at most this many distinct values is taken as class labels when the
# task is "auto". Diabetes (214 distinct integer values) is regression; digits (10) is multiclass.
MAX_AUTO_CLASSES = 50


@dataclass
class ResolvedTarget:
    """The task and the target in the form the model trains on.

    Attributes:
        task: "regression", "binary" or "multiclass".
        values: float64 regression values, or int64 class ids 0..C-1.
        class_values: the original label of each class id, empty for regression.
    """

    task: str
    values: np.ndarray
    class_values: list[str]


def _infer_task(table: Table) -> str:
    if table.task_hint in ("regression", "binary", "multiclass"):
        return table.task_hint
    target = table.target
    distinct = np.unique(target)
    if table.task_hint == "classification" or not np.issubdtype(target.dtype, np.number):
        task = "binary" if distinct.size == 2 else "multiclass"
    elif np.all(distinct == np.round(distinct)) and distinct.size <= MAX_AUTO_CLASSES:
        task = "binary" if distinct.size == 2 else "multiclass"
    else:
        task = "regression"
    rank_zero_info(
        f"Task inferred as {task} from target '{table.target_name}' of {table.origin} "
        f"({distinct.size} distinct values); set data.task to override."
    )
    return task


def resolve_target(table: Table, task: TaskName) -> ResolvedTarget:
    """Return the task and the encoded target, raising ConfigError when they do not fit together."""
    if task == "auto":
        task = _infer_task(table)

    if task == "regression":
        if not np.issubdtype(table.target.dtype, np.number):
            raise ConfigError(
                f"data.task is regression but target '{table.target_name}' of {table.origin} is not "
                "numeric; set data.task to binary or multiclass"
            )
        return ResolvedTarget("regression", table.target.astype(np.float64), [])

    class_values, class_ids = np.unique(table.target, return_inverse=True)
    if class_values.size < 2:
        raise ConfigError(
            f"target '{table.target_name}' of {table.origin} has a single class ('{_label_name(class_values[0])}'); "
            "classification needs at least two, or set data.task to regression"
        )
    if task == "binary" and class_values.size != 2:
        raise ConfigError(
            f"data.task is binary but target '{table.target_name}' of {table.origin} has "
            f"{class_values.size} classes; set data.task to multiclass"
        )
    return ResolvedTarget(task, class_ids.astype(np.int64), [_label_name(value) for value in class_values])


def _label_name(value: object) -> str:
    # Labels read as floats (1.0) are shown as the integers they are (1).
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)
