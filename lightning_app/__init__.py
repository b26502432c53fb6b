"""A Lightning template for finding out why batch training diverges or stalls."""

from lightning_app.data import TabularDataModule
from lightning_app.errors import ConfigError
from lightning_app.model import TabularModel

__all__ = ["ConfigError", "TabularDataModule", "TabularModel"]
