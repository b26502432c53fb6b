"""The LightningCLI of the template: argument links, default logger and callbacks, one-line errors."""

from __future__ import annotations

import sys
from pathlib import Path

from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import TensorBoardLogger
from jsonargparse import lazy_instance
from typing_extensions import override

from lightning_app.data import TabularDataModule
from lightning_app.errors import ConfigError
from lightning_app.model import TabularModel

LOG_DIR = "logs"

# The datamodule computes these from the data, so a config never repeats them.
_LINKED_FROM_DATA = {
    "num_features": "num_features",
    "num_outputs": "num_outputs",
    "task_name": "task",
    "target_mean": "target_mean",
    "target_std": "target_std",
    "class_counts": "class_counts",
    "class_names": "class_names",
}



class TemplateCLI(LightningCLI):
    """LightningCLI for ``TabularModel`` and ``TabularDataModule``.

    Runs are written to ``logs/<name of the first config file>/version_N``, so re-running a config
    starts a new version instead of overwriting the saved ``config.yaml`` of an earlier run.
    """

    @override
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        for source, target in _LINKED_FROM_DATA.items():
            parser.link_arguments(f"data.{source}", f"model.{target}", apply_on="instantiate")

        # Always-on callbacks, configured under their own keys, for example --checkpoint.save_top_k 3.
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({"checkpoint.monitor": "val/loss", "checkpoint.mode": "min"})
        # Lightning 2.6 writes a monitored checkpoint's last.ckpt only when a best checkpoint is saved
        # in the same step, so last.ckpt would hold the best epoch. An unmonitored checkpoint named
        # "last" stores the latest epoch instead.
        parser.add_lightning_class_args(ModelCheckpoint, "last_checkpoint")
        parser.set_defaults(
            {
                "last_checkpoint.filename": "last",
                "last_checkpoint.save_top_k": 1,
                "last_checkpoint.enable_version_counter": False,
            }
        )
        parser.add_lightning_class_args(LearningRateMonitor, "lr_monitor")
        parser.set_defaults({"lr_monitor.logging_interval": "epoch"})
        parser.set_defaults({"trainer.logger": lazy_instance(TensorBoardLogger, save_dir=LOG_DIR)})

    @override
    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        logger = config.get("trainer", {}).get("logger")
        if not isinstance(logger, dict) and not hasattr(logger, "init_args"):
            return
        init_args = logger["init_args"] if isinstance(logger, dict) else logger.init_args
        config_files = config.get("config") or []
        if init_args.get("name") in (None, "lightning_logs") and config_files:
            init_args["name"] = Path(str(config_files[0])).stem


def cli_main(args: list[str] | None = None) -> TemplateCLI | None:
    """Run the CLI; a ConfigError is printed as one line and exits with status 2."""
    try:
        return TemplateCLI(
            TabularModel,
            TabularDataModule,
            seed_everything_default=42,
            args=args,
        )
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
