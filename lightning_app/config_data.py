"""Build the datamodule that a YAML config (or a run's saved config.yaml) describes."""

from __future__ import annotations

from pathlib import Path

import yaml
from jsonargparse import ArgumentParser

from lightning_app.data import TabularDataModule


def datamodule_from_config(config_file: Path) -> TabularDataModule:
    """Return the ``data`` section of a config instantiated as a TabularDataModule."""
    config = yaml.safe_load(Path(config_file).read_text())
    parser = ArgumentParser()
    parser.add_class_arguments(TabularDataModule, "data")
    parsed = parser.parse_object({"data": config["data"]})
    return parser.instantiate_classes(parsed).data
