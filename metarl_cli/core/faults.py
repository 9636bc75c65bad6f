"""What stops a started run: a fault (NaN/inf, a failed checkpoint write) or a signal.

A NaN or inf in a reported quantity or in the learner's state stops the run naming the
iteration and the quantity; SIGINT/SIGTERM ask the run to stop after the current iteration,
with a checkpoint (docs/RELIABILITY.md lists each promise and its test).
"""

from __future__ import annotations

import math
import os
import re
import signal
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch

from metarl_cli.core.evaluation import MetaLearner

STEP_SIZE_HINT = "lower the step sizes (algo.inner_lr, algo.max_kl, optimizer.lr)"


class RunFault(RuntimeError):
    """A started run that cannot go on (NaN/inf, a failed checkpoint write): one line."""


# --- numerical faults ---
def check_finite(iteration: int, metrics: Mapping[str, float], learner: MetaLearner) -> None:
    """Stop on a NaN or inf in a reported quantity or anywhere in the learner's state."""
    for key, value in metrics.items():
        if not math.isfinite(value):
            raise RunFault(f"iteration {iteration}: {key} is {value}; {STEP_SIZE_HINT}")
    for name, tensor in _tensors(learner.state_dict(), "learner"):
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise RunFault(f"iteration {iteration}: {name} holds nan or inf; {STEP_SIZE_HINT}")


def _tensors(state: Any, prefix: str) -> Iterator[tuple[str, torch.Tensor]]:
    if isinstance(state, torch.Tensor):
        yield prefix, state
    elif isinstance(state, Mapping):
        for key, value in state.items():
            yield from _tensors(value, f"{prefix}.{key}")
    elif isinstance(state, list | tuple):
        for i, value in enumerate(state):
            yield from _tensors(value, f"{prefix}.{i}")


@contextmanager
def numerical_guard(iteration: int, phase: str) -> Iterator[None]:
    """Numerical failures raised inside (a non-finite TRPO curvature, torch.distributions
    refusing nan parameters) and running out of memory become a RunFault naming the iteration
    and the quantity."""
    try:
        yield
    except FloatingPointError as error:
        raise RunFault(f"iteration {iteration}: {phase}: {first_line(error)}") from error
    except MemoryError as error:  # e.g. a horizon or batch too large for this machine
        raise RunFault(f"iteration {iteration}: {phase}: out of memory ({first_line(error)}); "
                       "lower env.horizon, meta_batch_size or the rollouts per task") from error
    except ValueError as error:
        found = re.match(r"Expected parameter (\w+)", str(error))
        if "invalid values" not in str(error) or not found:
            raise
        raise RunFault(f"iteration {iteration}: {phase}: the policy's {found.group(1)} is nan "
                       f"or inf; {STEP_SIZE_HINT}") from error


# --- signals: finish the iteration, checkpoint, then stop ---
class StopRequest:
    """SIGINT/SIGTERM ask the run to stop after the current iteration; a second one stops
    the process at once (checkpoints are atomic, so that is safe too)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.signum = signum
        os.write(2, f"\n{signal.Signals(signum).name}: stopping after the current iteration "
                    "(send it again to stop at once)\n".encode())


def first_line(error: BaseException) -> str:
    """The first line of an error's message (its type name if it has none): every fault and
    config error is reported in one line."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
