"""The argument checks: each rule accepts its boundary values, refuses the rest (NaN included)
with a message naming the parameter, the allowed values and what it got; ``or_none`` admits
None and says "or null"."""

from __future__ import annotations

import math
import re
from collections.abc import Callable

import pytest

from metarl_cli.core.checks import (
    check_at_least,
    check_choice,
    check_integer,
    check_non_negative,
    check_positive,
    check_unit_interval,
    finite,
    finite_non_negative,
    finite_range,
)


def at_least_2(**values: float) -> None:
    check_at_least(2, **values)


def integer_at_least_1(**values: int) -> None:
    check_integer(1, **values)


@pytest.mark.parametrize(("check", "good", "bad", "message"), [
    (check_positive, 1e-12, 0, "must be > 0, got 0"),
    (check_positive, 3, -1.5, "must be > 0, got -1.5"),
    (check_positive, math.inf, math.nan, "must be > 0, got nan"),
    (check_non_negative, 0, -1e-9, "must be >= 0, got -1e-09"),
    (check_non_negative, 0.0, math.nan, "must be >= 0, got nan"),
    (check_unit_interval, 1.0, 0.0, "must be in (0, 1], got 0.0"),
    (check_unit_interval, 1e-9, 1.5, "must be in (0, 1], got 1.5"),
    (at_least_2, 2, 1.999, "must be >= 2, got 1.999"),
    (at_least_2, 2.5, math.nan, "must be >= 2, got nan"),
    (integer_at_least_1, 1, 0, "must be an integer >= 1, got 0"),
    (integer_at_least_1, 7, 2.0, "must be an integer >= 1, got 2.0"),
    (integer_at_least_1, 7, "3", "must be an integer >= 1, got '3'"),
])
def test_checks_name_the_parameter_that_is_out_of_range(check: Callable[..., None],
                                                        good: object, bad: object,
                                                        message: str) -> None:
    check(first=good, second=good)
    with pytest.raises(ValueError, match="^second " + re.escape(message) + "$"):
        check(first=good, second=bad)
    with pytest.raises(ValueError, match="^first "):  # the first value out of range is named
        check(first=bad, second=bad)


def test_none_is_refused_unless_or_none_then_the_message_says_or_null() -> None:
    with pytest.raises(ValueError, match=r"^lr must be > 0, got None$"):
        check_positive(lr=None)
    check_positive(or_none=True, lr=None, tau=0.5)
    with pytest.raises(ValueError, match=r"^lr must be > 0 or null, got 0$"):
        check_positive(or_none=True, lr=0)
    check_integer(1, or_none=True, bptt_length=None)
    with pytest.raises(ValueError, match=r"^bptt_length must be an integer >= 1 or null, "
                                         r"got 1\.5$"):
        check_integer(1, or_none=True, bptt_length=1.5)
    check_at_least(1, or_none=True, num_test_tasks=None)
    with pytest.raises(ValueError, match=r"^num_test_tasks must be >= 1 or null, got 0$"):
        check_at_least(1, or_none=True, num_test_tasks=0)


def test_integer_check_uses_the_given_minimum() -> None:
    check_integer(2, num_arms=2)
    with pytest.raises(ValueError, match=r"^num_arms must be an integer >= 2, got 1$"):
        check_integer(2, num_arms=1)


def test_check_choice_lists_the_choices() -> None:
    check_choice("outer_step", "trpo", ("trpo", "vpg"))
    with pytest.raises(ValueError, match=r"^outer_step must be one of trpo, vpg, got 'adam'$"):
        check_choice("outer_step", "adam", ("trpo", "vpg"))


def test_finite_checks_return_floats_and_refuse_nan_and_infinity() -> None:
    assert finite("alive_bonus", -2) == -2.0 and isinstance(finite("alive_bonus", -2), float)
    assert finite_non_negative("ctrl_cost_weight", 0) == 0.0
    assert finite_range("healthy_z_range", [1, 2]) == (1.0, 2.0)
    for bad in (math.nan, math.inf):
        with pytest.raises(ValueError, match=f"^alive_bonus must be a finite number, got {bad}$"):
            finite("alive_bonus", bad)
        with pytest.raises(ValueError, match="^ctrl_cost_weight must be a finite number >= 0"):
            finite_non_negative("ctrl_cost_weight", bad)
    with pytest.raises(ValueError, match="^ctrl_cost_weight must be a finite number >= 0"):
        finite_non_negative("ctrl_cost_weight", -0.1)
    for bad_range in ([2.0, 1.0], [1.0, 1.0], [0.0, math.inf], [1.0]):
        with pytest.raises(ValueError, match=r"^healthy_z_range must be \(low, high\)"):
            finite_range("healthy_z_range", bad_range)
