"""Tabular data: sources, the split, datasets and the datamodule."""

from lightning_app.data.datamodule import TabularDataModule
from lightning_app.data.dataset import MemmapTableDataset, TableDataset, batch_collate
from lightning_app.data.sources import DataSource, FileSource, NpySource
from lightning_app.data.synthetic import GaussianClasses, GroupedTargets, LinearTeacher, NoiseRegression
from lightning_app.data.table import Table

__all__ = [
    "DataSource",
    "FileSource",
    "GaussianClasses",
    "GroupedTargets",
    "LinearTeacher",
    "MemmapTableDataset",
    "NoiseRegression",
    "NpySource",
    "TableDataset",
    "TabularDataModule",
    "Table",
    "batch_collate",
]
