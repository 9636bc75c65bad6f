"""core/faults.py: failures inside a training phase become one RunFault naming the iteration."""

from __future__ import annotations

import numpy as np
import pytest

from metarl_cli.core.faults import RunFault, numerical_guard


def test_running_out_of_memory_is_a_run_fault_with_the_fix() -> None:
    with pytest.raises(RunFault, match=r"^iteration 2: meta-test: out of memory \(.*\); lower "
                                       r"env\.horizon"), numerical_guard(2, "meta-test"):
        np.zeros((10**12, 10**6))  # far more than any machine has


def test_floating_point_errors_name_the_phase() -> None:
    with pytest.raises(RunFault, match="^iteration 1: meta-train step: TRPO"), \
            numerical_guard(1, "meta-train step"):
        raise FloatingPointError("TRPO: step curvature is nan")
