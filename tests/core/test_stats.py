"""Bootstrap intervals and the IQM against values worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from metarl_cli.core.stats import bootstrap_ci, iqm


def test_iqm_drops_a_quarter_at_each_end() -> None:
    assert iqm(np.array([100.0, 1, 2, 3, 4, 5, 6, -50])) == pytest.approx((2 + 3 + 4 + 5) / 4)
    assert iqm(np.array([1.0, 2.0, 9.0])) == pytest.approx(4.0)  # n < 4: nothing to cut
    columns = iqm(np.array([[0.0, 10], [1, 11], [2, 12], [3, 13]]), axis=0)
    np.testing.assert_allclose(columns, [1.5, 11.5])


def test_one_run_has_an_interval_of_zero_width() -> None:
    ci = bootstrap_ci(np.array([[-3.0, -1.0]]))
    np.testing.assert_array_equal(ci.estimate, [-3.0, -1.0])
    np.testing.assert_array_equal(ci.low, ci.estimate)
    np.testing.assert_array_equal(ci.high, ci.estimate)


def test_two_runs_give_their_range() -> None:
    # Resampled means of {a, b} are a, (a+b)/2 or b with chances 1/4, 1/2, 1/4: the 2.5% and
    # 97.5% quantiles of 10,000 resamples are a and b themselves.
    ci = bootstrap_ci(np.array([[-12.0, -7.0], [-10.0, -5.0]]))
    np.testing.assert_allclose(ci.estimate, [-11.0, -6.0])
    np.testing.assert_allclose(ci.low, [-12.0, -7.0])
    np.testing.assert_allclose(ci.high, [-10.0, -5.0])


def test_three_runs_worked_out_by_hand() -> None:
    # {0, 0, 3}: the resampled mean is 3 with chance 1/27 = 3.7% > 2.5%, and 0 with 8/27.
    ci = bootstrap_ci(np.array([0.0, 0.0, 3.0]))
    assert (ci.estimate[0], ci.low[0], ci.high[0]) == (1.0, 0.0, 3.0)


def test_many_runs_match_the_normal_interval() -> None:
    values = np.random.default_rng(5).normal(2.0, 1.0, size=400)
    ci = bootstrap_ci(values, resamples=4000, seed=1)
    half = 1.96 * values.std(ddof=1) / np.sqrt(len(values))
    assert ci.estimate[0] == pytest.approx(values.mean())
    assert ci.low[0] == pytest.approx(values.mean() - half, abs=0.2 * half)
    assert ci.high[0] == pytest.approx(values.mean() + half, abs=0.2 * half)


def test_seeded_and_iqm_selectable() -> None:
    values = np.random.default_rng(0).normal(size=(7, 3))
    a, b = bootstrap_ci(values, seed=3), bootstrap_ci(values, seed=3)
    np.testing.assert_array_equal(a.low, b.low)
    robust = bootstrap_ci(values, statistic="iqm")
    np.testing.assert_allclose(robust.estimate, iqm(values, axis=0))
    assert np.all(robust.low <= robust.estimate) and np.all(robust.estimate <= robust.high)


@pytest.mark.parametrize("kwargs, message", [
    ({"statistic": "median"}, "statistic must be one of mean, iqm"),
    ({"confidence": 1.5}, "confidence"),
    ({"resamples": 0}, "resamples"),
])
def test_bad_arguments_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        bootstrap_ci(np.ones(3), **kwargs)
