"""Argument checks for constructors: one place for the rules and the wording of their errors.

The values are passed as keywords, so the message names the parameter as it is spelled in the
config (constructor parameters are config keys), and ``build()`` can turn it into a one-line
ConfigError naming the key: ``check_positive(inner_lr=0)`` raises
``ValueError("inner_lr must be > 0, got 0")``. The comparisons fail for NaN. With
``or_none=True`` a value may also be None (null in a config: "use the default behaviour"),
and the message says so.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from metarl_cli.core.types import OptimizerFactory


def _require(rule: str, ok: Callable[[Any], bool], values: dict[str, Any], or_none: bool,
             show: Callable[[Any], str] = str) -> None:
    """Raise "<name> must be <rule>[ or null], got <value>" for the first value not ``ok``."""
    for name, value in values.items():
        if value is None and or_none:
            continue
        if value is None or not ok(value):
            allowed = f"{rule} or null" if or_none else rule
            raise ValueError(f"{name} must be {allowed}, got {show(value)}")


def check_positive(*, or_none: bool = False, **values: float | None) -> None:
    """Counts, sizes, rates and scales: > 0."""
    _require("> 0", lambda v: v > 0, values, or_none)


def check_non_negative(*, or_none: bool = False, **values: float | None) -> None:
    """Weights, coefficients and step counts that may be zero: >= 0."""
    _require(">= 0", lambda v: v >= 0, values, or_none)


def check_unit_interval(*, or_none: bool = False, **values: float | None) -> None:
    """Discounts, ratios and fractions: in (0, 1]."""
    _require("in (0, 1]", lambda v: 0 < v <= 1, values, or_none)


def check_at_least(minimum: int, *, or_none: bool = False, **values: float | None) -> None:
    """Sizes with a lower bound: >= ``minimum``."""
    _require(f">= {minimum}", lambda v: v >= minimum, values, or_none)


def check_integer(minimum: int, *, or_none: bool = False, **values: int | None) -> None:
    """Counts that index or size arrays: a Python int >= ``minimum`` (a float such as 2.0 is
    refused here rather than failing later inside NumPy or torch)."""
    _require(f"an integer >= {minimum}", lambda v: isinstance(v, int) and v >= minimum, values,
             or_none, show=repr)


def check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    """A value that selects one of a fixed set of behaviours: one of ``choices``, listed."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")


def require_optimizer(optimizer: OptimizerFactory | None, needed_by: str) -> OptimizerFactory:
    """The optimizer factory, or a ValueError saying what needs it and how to choose one."""
    if optimizer is None:
        raise ValueError(f"optimizer: {needed_by} needs an optimizer (choose one with "
                         f"optimizer=...)")
    return optimizer


def finite(name: str, value: float) -> float:
    """A physical constant or weight that may be any sign: finite; returned as a float."""
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}")
    return float(value)


def finite_non_negative(name: str, value: float) -> float:
    """A cost weight or noise scale: finite and >= 0; returned as a float."""
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    return float(value)


def finite_range(name: str, value: Sequence[float]) -> tuple[float, float]:
    """A (low, high) interval with finite low < high; returned as floats."""
    if len(value) != 2 or not (math.isfinite(value[0]) and math.isfinite(value[1])
                               and value[0] < value[1]):
        raise ValueError(f"{name} must be (low, high) with finite low < high, got {value}")
    return float(value[0]), float(value[1])
