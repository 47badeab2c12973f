"""UPS core physics and its RFC 1628 view: Peukert runtime (REFERENCE.md §7.4), discharge, batteryLow,
recharge, self-test, determinism."""

from __future__ import annotations

import random

import pytest

from collectors import codec
from collectors.model import Quality
from collectors.profile import load_profiles
from config.schema import DeviceSimulation
from simulators.devices.ups import UpsCore, UpsModel

PROFILE = load_profiles()["ups/ietf_rfc1628"]


def ups(seed: int = 1, **params) -> UpsModel:
    """The RFC 1628 view of a fresh UPS core (``.core`` is the physics)."""
    defaults = {"rated_power_w": 40_000, "load_fraction": 0.5, "runtime_full_load_min": 10.0,
                "peukert_exponent": 1.2, "noise": 0.0}
    return UpsModel(UpsCore(DeviceSimulation(**{**defaults, **params}), random.Random(seed)))


def run_minutes(model: UpsModel, minutes: float, dt_s: float = 10.0) -> None:
    for _ in range(round(minutes * 60 / dt_s)):
        model.core.step(dt_s)


@pytest.mark.parametrize(("load", "minutes"), [(1.0, 10.0), (0.5, 23.0), (0.25, 53.0)])
def test_peukert_runtime_matches_the_reference_figures(load, minutes):
    # REFERENCE.md §7.4, k = 1.2: 10 min at 100 % → ~23 min at 50 % → ~53 min at 25 %
    assert ups().core.runtime_at(load) == pytest.approx(minutes, rel=0.01)


def test_runtime_scales_with_state_of_charge():
    assert ups().core.runtime_at(0.5, charge_fraction=0.5) == pytest.approx(ups().core.runtime_at(0.5) / 2)


def test_values_cover_every_profile_point_and_encode():
    values = ups().values()
    assert set(values) == {spec.name for spec in PROFILE.points}
    for spec in PROFILE.points:
        _, quality, _ = codec.decode(spec, codec.encode(spec, values[spec.name]))
        assert quality is Quality.GOOD, spec.name


def test_on_mains_the_ups_is_normal_and_full():
    model = ups()
    model.core.step(60)
    values = model.values()
    assert values["output.source"] == "normal"
    assert values["battery.status"] == "batteryNormal"
    assert values["battery.charge"] == 100
    assert values["battery.time_on_battery"] == 0
    assert values["battery.runtime"] == pytest.approx(22.97, abs=0.01)
    assert values["output.voltage"] == pytest.approx(230)
    assert values["output.frequency"] == pytest.approx(50.0)
    assert values["output.realpower"] == pytest.approx(20_000)
    assert values["ups.alarms"] == 0
    assert values["ups.mfr"] == "facwatch-sim"
    assert values["ups.model"] == "SIM-RFC1628 40 kVA"


def test_rfc1628_wire_units():
    raw = {spec.name: codec.encode(spec, value) for spec, value in
           ((spec, ups().values()[spec.name]) for spec in PROFILE.points)}
    assert raw["battery.voltage"] == round(ups().battery_voltage_v * 10)  # 0.1 V DC
    assert raw["output.frequency"] == 500  # 0.1 Hz
    assert raw["output.voltage"] == 230  # whole RMS volts
    assert raw["output.source"] == 3  # normal(3)
    assert raw["battery.status"] == 2  # batteryNormal(2)


def test_load_wanders_around_the_configured_fraction():
    model = ups(noise=1.0, load_fraction=0.45)
    loads = []
    for _ in range(2000):
        model.core.step(30)
        loads.append(model.core.load_fraction)
    assert min(loads) > 0.35 and max(loads) < 0.55
    assert sum(loads) / len(loads) == pytest.approx(0.45, abs=0.01)
    assert max(loads) - min(loads) > 0.01


def test_on_battery_charge_and_runtime_fall_and_time_counts_up():
    model = ups()
    model.core.mains_available = False
    run_minutes(model, 5)
    values = model.values()
    assert values["output.source"] == "battery"
    assert values["battery.time_on_battery"] == pytest.approx(300)
    assert values["battery.charge"] == pytest.approx(100 * (1 - 5 / 22.97), abs=0.1)
    assert values["battery.runtime"] == pytest.approx(22.97 - 5, abs=0.05)
    assert values["input.voltage"] == 0
    assert values["battery.current"] < 0  # discharging
    assert values["ups.alarms"] == 2  # upsAlarmOnBattery + upsAlarmInputBad


def test_charge_falls_in_proportion_to_load_to_the_k():
    half, quarter = ups(load_fraction=0.5), ups(load_fraction=0.25)
    for model in (half, quarter):
        model.core.mains_available = False
        run_minutes(model, 2)
    used_half, used_quarter = 1 - half.core.charge_fraction, 1 - quarter.core.charge_fraction
    assert used_half / used_quarter == pytest.approx(2 ** 1.2, rel=0.001)


def test_a_full_battery_lasts_the_peukert_runtime():
    model = ups(load_fraction=0.5)
    model.core.mains_available = False
    run_minutes(model, 22.5)
    assert model.core.output_on
    run_minutes(model, 1.0)
    assert not model.core.output_on
    assert model.values()["output.source"] == "none"
    assert model.values()["battery.status"] == "batteryDepleted"


def test_battery_low_when_runtime_reaches_the_threshold():
    model = ups(load_fraction=0.5)
    model.core.mains_available = False
    assert model.values()["battery.runtime.low"] == 5
    run_minutes(model, 17.5, dt_s=1.0)  # 22.97 - 17.5 = 5.47 min left
    assert model.values()["battery.status"] == "batteryNormal"
    run_minutes(model, 0.5, dt_s=1.0)  # 4.97 min left
    assert model.core.runtime_min <= 5
    assert model.values()["battery.status"] == "batteryLow"
    assert "upsAlarmLowBattery" in model.alarms()


def test_line_bads_counts_each_outage_once():
    model = ups()
    for _ in range(3):
        model.core.mains_available = False
        model.core.mains_available = False
        model.core.step(10)
        model.core.mains_available = True
    assert model.values()["input.line_bads"] == 3
    assert model.values()["battery.time_on_battery"] == 0


def test_recharge_takes_hours_after_mains_returns():
    model = ups()
    model.core.mains_available = False
    run_minutes(model, 15)
    low = model.core.charge_fraction
    model.core.mains_available = True
    run_minutes(model, 60)
    assert low < model.core.charge_fraction < 1.0
    assert model.values()["battery.current"] > 0  # charging
    run_minutes(model, 6 * 60)
    assert model.core.charge_fraction == 1.0
    assert model.values()["output.source"] == "normal"


def test_same_seed_same_values():
    first, again = ups(seed=5, noise=1.0), ups(seed=5, noise=1.0)
    for model in (first, again):
        run_minutes(model, 30)
    assert first.values() == again.values()
    other = ups(seed=6, noise=1.0)
    run_minutes(other, 30)
    assert other.values() != first.values()


def test_zero_load_does_not_divide_by_zero():
    model = ups(load_fraction=0.0)
    assert model.values()["battery.runtime"] > 1000
    assert model.values()["ups.load"] == 0


def test_a_self_test_runs_10_s_on_battery_then_reports_its_outcome():
    model = ups()
    model.core.start_self_test("warning", epoch_s=1_700_000_000)
    assert model.values()["ups.test.result"] == "inProgress"
    model.core.step(5)
    assert model.values()["output.source"] == "battery"
    assert model.values()["input.voltage"] == 230  # the mains is there; the test chose the battery
    assert "upsAlarmTestInProgress" in model.alarms()
    model.core.step(5)
    values = model.values()
    assert values["ups.test.result"] == "doneWarning"
    assert values["output.source"] == "normal"
    assert values["battery.time_on_battery"] == 0
    assert values["input.line_bads"] == 0
    assert model.core.charge_fraction < 1.0


def test_losing_mains_during_a_self_test_aborts_it():
    model = ups()
    model.core.start_self_test("pass", epoch_s=0)
    model.core.step(3)
    model.core.mains_available = False
    values = model.values()
    assert values["ups.test.result"] == "aborted"
    assert values["output.source"] == "battery"
    assert values["input.line_bads"] == 1


def test_a_failed_self_test_leaves_an_alarm_until_a_test_passes():
    model = ups()
    model.core.start_self_test("fail", epoch_s=0)
    model.core.step(10)
    assert model.values()["ups.test.result"] == "doneError"
    assert "upsAlarmDiagnosticTestFailed" in model.alarms()
    model.core.start_self_test("pass", epoch_s=0)
    model.core.step(10)
    assert "upsAlarmDiagnosticTestFailed" not in model.alarms()
    with pytest.raises(ValueError, match="pass"):
        model.core.start_self_test("great", epoch_s=0)
