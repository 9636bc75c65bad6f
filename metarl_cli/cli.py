"""``metarl <command> [overrides]``: dispatch to a command's Hydra entry point."""

from __future__ import annotations

import importlib
import os
import sys

COMMANDS = {
    "train": ("metarl_cli.commands.train", "meta-train and meta-test a learner (Hydra overrides)"),
    "eval": ("metarl_cli.commands.eval", "meta-test a saved run again: eval run=<run dir> [...]"),
    "plot": ("metarl_cli.commands.plot", "compare runs/sweeps: curves with 95% CIs, CSV, table"),
    "list": ("metarl_cli.commands.list", "show the config groups and their choices"),
}

USAGE = "usage: metarl <command> [overrides...]\n\ncommands:\n" + "\n".join(
    f"  {name:<8}{help_}" for name, (_, help_) in COMMANDS.items()
) + (
    "\n\nexamples:\n  metarl train algo=maml env=halfcheetah_vel seed=1"
    "\n  metarl eval run=outputs/<date>/<time> eval.num_tasks=40"
    "\n  metarl plot multirun/<date>/<time> --out comparison.png")


def main(argv: list[str] | None = None) -> None:
    try:
        try:
            _dispatch(sys.argv[1:] if argv is None else argv)
        finally:
            sys.stdout.flush()
    except BrokenPipeError:  # output piped into a reader that closed early (`| head`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no 2nd error at exit
        sys.exit(1)


def _dispatch(args: list[str]) -> None:
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE)
        return
    if args[0] not in COMMANDS:
        print(f"error: unknown command {args[0]!r}; choose one of {', '.join(COMMANDS)}\n",
              file=sys.stderr)
        print(USAGE, file=sys.stderr)
        sys.exit(2)
    module, _ = COMMANDS[args[0]]
    sys.argv = [f"metarl {args[0]}", *args[1:]]
    importlib.import_module(module).main()
