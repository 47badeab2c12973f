"""Derived values against the worked numbers of REFERENCE.md §6, §7.2 and §7.4."""

from __future__ import annotations

import pytest

from alerts.derived import RateWindow, dew_point, fuel_days_full_load, ups_autonomy_full_load


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
