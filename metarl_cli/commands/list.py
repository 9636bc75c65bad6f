"""``metarl list``: the config groups and their choices, with each choice's one-line summary."""

from __future__ import annotations

from metarl_cli.core.paths import CONFIG_DIR

GROUPS = ("algo", "env", "model", "optimizer", "sampler", "logger", "experiment",
          "hydra/launcher", "hydra/sweeper")  # presets of the launcher/sweeper plugin extras


def describe(path: str) -> str:
    """A config file's first comment line (without the '# ')."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("# @package"):
                continue
            return line[2:].strip() if line.startswith("# ") else ""
    return ""


def main() -> None:
    for group in GROUPS:
        choices = sorted((CONFIG_DIR / group).glob("*.yaml"))
        if not choices:
            continue
        print(f"{group}:")
        for choice in choices:
            print(f"  {choice.stem:<24}{describe(str(choice))}")
    print("\nuse: metarl train <group>=<choice> [key=value ...]"
          "   e.g. metarl train env=halfcheetah_dir")
