"""Where the shipped Hydra configs live, for editable and non-editable installs alike."""

from importlib.resources import files
from pathlib import Path

CONFIG_DIR = Path(str(files("metarl_cli.configs")))
