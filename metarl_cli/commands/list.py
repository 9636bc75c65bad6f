"""``metarl list``: the config groups and their choices, with each choice's one-line summary."""

from __future__ import annotations

from metarl_cli.core.paths import CONFIG_DIR

GROUPS = ("algo", "env", "model", "optimizer", "sampler", "logger", "experiment",
          "hydra/launcher", "hydra/sweeper")  # presets of the launcher/sweeper plugin extras


def describe(path: str) -> str:
    """A config file's first comment line (without the '# '), with '...' where the comment
    goes on (the file has the rest)."""
    lines = [line for line in open(path, encoding="utf-8").read().splitlines()
             if not line.startswith("# @package")]
    if not lines or not lines[0].startswith("# "):
        return ""
    first = lines[0][2:].strip()
    goes_on = len(lines) > 1 and lines[1].startswith("# ") and not first.endswith(".")
    return f"{first} ..." if goes_on else first


def main() -> None:
    for group in GROUPS:
        choices = sorted((CONFIG_DIR / group).glob("*.yaml"))
        if not choices:
            continue
        print(f"{group}:")
        width = max(24, *(len(choice.stem) + 2 for choice in choices))
        for choice in choices:
            print(f"  {choice.stem:<{width}}{describe(str(choice))}")
    print("\nuse: metarl train <group>=<choice> [key=value ...]"
          "   e.g. metarl train env=halfcheetah_dir")
