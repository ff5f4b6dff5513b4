"""The data-set decision combines every feature's p-value (harmonic mean p-value).

Issue 18: on digits at windows of 100 rows the label subpopulation (digits 0-4 only)
moves many pixels a little; Bonferroni's ``F x min p`` looks at the smallest p-value
alone and PSI found 30 % of those windows where a raw KS test found 50 %. The harmonic
mean p-value counts every feature's evidence (PSI 35.5 %, Jensen-Shannon 53.5 %, KS
78.5 % on the same windows) and keeps the declared rate under dependence.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from modelshield.api.v1alpha1 import policies
from modelshield.drift import combining, config, metrics, monitoring, payloads, profiles

Statistic = policies.DriftStatistic
FEATURES = 30
WINDOW = 250


def _monitor(reference: np.ndarray[Any, np.dtype[np.float64]]) -> monitoring.Monitor:
    profile = profiles.Profile(
        features=tuple(
            profiles.build_numeric(f"f{j}", reference[:, j]) for j in range(reference.shape[1])
        ),
        rows=reference.shape[0],
    )
    settings = config.MonitorConfig(
        profile="-", window=WINDOW, statistic=Statistic.KOLMOGOROV_SMIRNOV, false_alarm_rate=0.01
    )
    return monitoring.Monitor(settings, profile)


def _batch(values: np.ndarray[Any, np.dtype[np.float64]]) -> payloads.Batch:
    return payloads.Batch("request", values, np.empty((values.shape[0], 0), np.intp))


def test_many_features_moved_a_little_drift_the_data_set_though_none_alarms() -> None:
    """Old code: the data-set p-value was F x min p, over the rate whenever no feature alarmed."""
    rng = np.random.default_rng(21)
    monitor = _monitor(rng.normal(0.0, 1.0, (5000, FEATURES)))
    window = rng.normal(0.0, 1.0, (WINDOW, FEATURES))
    window[:, :20] += 0.14  # 20 features a little: p-values 5e-4 to 0.1, none under 3.3e-4
    (result,) = monitor.add([_batch(window)])
    assert result.drifted == 0
    assert not any(result.active)
    assert FEATURES * float(np.nanmin(result.alarm_p_values)) > 0.01  # Bonferroni: no drift
    assert result.dataset_p_value < 0.01
    exported = metrics.Metrics()
    exported.declare(monitor)
    exported.publish(result)
    assert exported.registry.get_sample_value(
        "modelshield_drift_dataset_p_value", {"stream": "request"}
    ) == pytest.approx(result.dataset_p_value)


def test_clean_windows_of_correlated_features_hold_the_rate() -> None:
    """Strongly correlated features (one factor): the decision must not count them as many.

    Fisher's combination, which assumes independent features, alarmed on 8-15 % of clean
    breast cancer windows at a declared 1 %; 200 windows here at 1 % expect 2 alarms.
    """
    rng = np.random.default_rng(22)

    def draw(rows: int) -> np.ndarray[Any, np.dtype[np.float64]]:
        factor = rng.normal(0.0, 1.0, (rows, 1))
        return factor + 0.3 * rng.normal(0.0, 1.0, (rows, FEATURES))

    monitor = _monitor(draw(3000))
    results = monitor.add([_batch(draw(WINDOW)) for _ in range(200)])
    alarms = sum(result.dataset_p_value < 0.01 for result in results)
    # Binomial(200, 0.01) is over 6 with probability 0.5 %.
    assert alarms <= 6, f"{alarms} of 200 clean windows under the rate"


def test_the_p_value_of_independent_uniform_p_values_is_uniform() -> None:
    rng = np.random.default_rng(23)
    draws = 20_000
    p_values = [combining.harmonic_p_value(rng.random(64), 64) for _ in range(draws)]
    share = float(np.mean(np.array(p_values) < 0.01))
    # Binomial(20,000, 0.01): 200 +- 14; the raw harmonic mean under 0.01 gives about 220.
    assert 0.008 <= share <= 0.0118, share


def test_one_small_p_value_gives_about_bonferroni() -> None:
    rng = np.random.default_rng(24)
    p_values = rng.random(64)
    p_values[5] = 1e-5
    combined = combining.harmonic_p_value(p_values, 64)
    assert 0.5 * 64e-5 < combined < 1.6 * 64e-5
    # Far beyond the simulated tail: Landau's tail, still falling with the p-value.
    p_values[5] = 1e-9
    assert combining.harmonic_p_value(p_values, 64) < 1e-7


def test_missing_p_values_count_as_no_evidence() -> None:
    assert combining.harmonic_p_value(np.array([np.nan, np.nan]), 2) == 1.0
    assert combining.harmonic_p_value(np.array([]), 0) == 1.0
    two = combining.harmonic_p_value(np.array([1e-3, np.nan]), 2)
    assert two == combining.harmonic_p_value(np.array([1e-3, 1.0]), 2)
    # Features of the other stream (counted in features, absent here) weigh like p = 1.
    assert combining.harmonic_p_value(np.array([1e-3]), 10) == combining.harmonic_p_value(
        np.array([1e-3, *[1.0] * 9]), 10
    )
    assert combining.harmonic_p_value(np.array([0.0, 0.5]), 2) < 1e-100
