"""Derived values against the worked numbers of REFERENCE.md §6, §7.2 and §7.4."""

from __future__ import annotations

import pytest

from alerts.derived import (
    QualifyingRun,
    RateWindow,
    dew_point,
    fuel_days_full_load,
    ring_redundancy,
    ups_autonomy_full_load,
)


@pytest.mark.parametrize(("t", "rh", "dp"), [(19, 70, 13.4), (21, 70, 15.3), (23, 70, 17.2), (19, 30, 1.0)])
def test_dew_point_matches_the_reference_table(t, rh, dp):
    assert dew_point(t, rh) == pytest.approx(dp, abs=0.1)


def test_dew_point_refuses_zero_humidity():
    with pytest.raises(ValueError):
        dew_point(21, 0)


def test_ups_autonomy_follows_peukert():
    # REFERENCE.md §7.4: k = 1.2, 10 min at 100 % ≈ 23 min at 50 % ≈ 53 min at 25 %
    assert ups_autonomy_full_load(23, 50, 1.2).value == pytest.approx(10, abs=0.1)
    assert ups_autonomy_full_load(53, 25, 1.2).value == pytest.approx(10, abs=0.2)
    assert ups_autonomy_full_load(12, 100, 1.2).method == "Peukert k=1.2 from 12 min at 100 % load"


def test_ups_autonomy_needs_a_load():
    with pytest.raises(ValueError):
        ups_autonomy_full_load(30, 0, 1.2)


def test_fuel_days_at_full_load():
    # REFERENCE.md §7.2: 1 MW at 0.27 L/kWh needs ≈ 49 900 L for 7 days + 10 %
    estimate = fuel_days_full_load(100, 49_900, 1000, 0.27)
    assert estimate.value == pytest.approx(7.7, abs=0.01)
    assert fuel_days_full_load(50, 49_900, 1000, 0.27, usable_fraction=0.9).value == pytest.approx(3.47, abs=0.01)


def test_rate_window_needs_a_full_window_then_scales_to_it():
    window = RateWindow(900)
    assert window.add(0, 20) is None
    assert window.add(600, 23) is None
    assert window.add(900, 26) == pytest.approx(6)
    assert window.add(1200, 26) == pytest.approx(4.5)  # from the last sample at or before the window start (0 s)
    assert window.add(1500, 26) == pytest.approx(3)  # now from 600 s: 3 °C in 900 s


def test_ring_redundancy_is_combined_load_over_the_smaller_ring():
    # 2N, both 80 kW: 55 % + 50 % = 84 kW on one 80 kW ring = 105 %
    estimate = ring_redundancy([("ups-a", 55, 80), ("ups-b", 50, 80)])
    assert estimate.value == pytest.approx(105)
    assert estimate.method == "(ups-a 55 % of 80 + ups-b 50 % of 80) = 84 on 80 left if the largest ring fails"


def test_ring_redundancy_with_unequal_rings_counts_on_the_smaller_one():
    # 60 % of 100 kW + 50 % of 60 kW = 90 kW; the 60 kW ring alone would carry 150 %
    assert ring_redundancy([("a", 60, 100), ("b", 50, 60)]).value == pytest.approx(150)
    # three rings: losing the largest (100) leaves 120
    assert ring_redundancy([("a", 30, 100), ("b", 30, 60), ("c", 30, 60)]).value == pytest.approx(55)


@pytest.mark.parametrize("rings", [[("a", 50, 80)], [("a", 50, 0), ("b", 50, 0)]])
def test_ring_redundancy_refuses_what_it_cannot_estimate(rings):
    with pytest.raises(ValueError):
        ring_redundancy(rings)


def test_qualifying_run_counts_once_after_holding_long_enough():
    run = QualifyingRun(hold_s=30, max_gap_s=6)
    assert [run.update(t, True) for t in range(0, 40, 2)].count(True) == 1
    assert run.update(40, False) is False and run.update(42, True) is False  # a new run starts at 42


def test_qualifying_run_never_counts_unknown_and_restarts_after_a_gap():
    run = QualifyingRun(hold_s=30, max_gap_s=6)
    assert not any(run.update(t, None) for t in range(0, 100, 2))
    assert not any(run.update(t, True if t < 20 or t > 30 else None) for t in range(0, 50, 2))
    assert run.since == 32  # 20..30 s unknown: the 12 s gap broke the run
