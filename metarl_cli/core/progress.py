"""Training progress on the console: a live bar, a line per iteration, or silence.

``progress=auto`` (the default) picks a bar on a terminal, one line per iteration when the
output is a file or a pipe (logs stay readable), and quiet inside a multirun job, where many
jobs share one console; the end-of-run summary is printed in every mode.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from tqdm import tqdm

from metarl_cli.core.build import ConfigError

MODES = ("auto", "bar", "lines", "quiet")


def resolve_mode(setting: str, multirun: bool, tty: bool) -> str:
    """The concrete mode (bar, lines or quiet) for a ``progress`` setting."""
    if setting not in MODES:
        raise ConfigError(f"progress: expected one of {', '.join(MODES)}, got {setting!r}")
    if setting != "auto":
        return setting
    if multirun:
        return "quiet"
    return "bar" if tty else "lines"


class Progress:
    def __init__(self, mode: str, iterations: int, stream: TextIO | None = None) -> None:
        self.mode = mode
        self.iterations = iterations
        self.stream = stream if stream is not None else sys.stdout
        self._last_test = ""
        self._bar: tqdm | None = None

    def start(self) -> None:
        """Open the bar on first use, so a run that fails while building leaves none."""
        if self.mode == "bar" and self._bar is None:
            self._bar = tqdm(total=self.iterations, desc="meta-train", unit="it",
                             file=self.stream, dynamic_ncols=True, leave=True)

    def meta_test(self, iteration: int, mean: Sequence[float]) -> None:
        self.start()
        returns = " ".join(f"{m:.1f}" for m in mean)
        self._last_test = f"test {mean[0]:.1f}->{mean[-1]:.1f}"  # before -> after adapting
        label = "before training" if iteration == 0 else f"@ {iteration}"
        self._write(f"meta-test {label}: {returns}")

    def iteration(self, iteration: int, metrics: Mapping[str, float], steps: int,
                  seconds: float) -> None:
        nan = float("nan")  # a learner may report other meta-train returns
        pre = metrics.get("meta_train/return_pre", nan)
        post = metrics.get("meta_train/return_post", nan)
        rate = steps / seconds if seconds > 0 else float("nan")
        self.start()
        if self._bar is not None:
            self._bar.set_postfix_str(f"{rate:,.0f} steps/s  pre {pre:.2f}  post {post:.2f}"
                                      + (f"  {self._last_test}" if self._last_test else ""),
                                      refresh=False)
            self._bar.update(1)
        elif self.mode == "lines":
            kl = f"kl {metrics['optim/kl']:.4f}  " if "optim/kl" in metrics else ""
            self._print(f"iter {iteration:>4}/{self.iterations}  return pre {pre:8.2f}  "
                        f"post {post:8.2f}  {kl}{rate:9,.0f} steps/s  {seconds:5.1f}s")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _write(self, line: str) -> None:
        if self._bar is not None:
            self._bar.write(line, file=self.stream)
        elif self.mode == "lines":
            self._print(line)

    def _print(self, line: str) -> None:
        try:
            print(line, file=self.stream, flush=True)
        except BrokenPipeError:  # the reader went away (`| head`): the run trains on, quietly
            self.mode = "quiet"
            os.dup2(os.open(os.devnull, os.O_WRONLY), self.stream.fileno())


def console_progress(setting: str, iterations: int) -> Progress:
    """The progress display for this process: quiet by default in a Hydra multirun job."""
    multirun = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    return Progress(resolve_mode(setting, multirun, sys.stdout.isatty()), iterations)


def run_summary(summary: Mapping[str, Any]) -> str:
    """One line of totals for the end of a run, from its summary.json record."""
    seconds = float(summary.get("wall_clock_s", 0.0))
    steps = int(summary.get("env_steps", 0))
    minutes, secs = divmod(int(round(seconds)), 60)
    rate = f"{steps / seconds:,.0f} env steps/s" if seconds > 0 else "n/a env steps/s"
    return (f"{summary.get('algo')} on {summary.get('env')}  seed {summary.get('seed')}  "
            f"iterations {summary.get('iterations')}  env steps {steps:,}  "
            f"wall {minutes}m{secs:02d}s  ({rate})")
