"""Train, validate, test or predict from a YAML config: python train.py fit --config configs/FILE.yaml"""

from lightning_app.cli import cli_main

if __name__ == "__main__":
    cli_main()
