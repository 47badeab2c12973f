"""UpsTrapEmitter on scripted timelines of simulated time: which traps a UPS agent sends, and when."""

from __future__ import annotations

import pytest

from collectors.profile import load_profiles
from simulators.traps import (
    MTRAPARGS_STRING,
    PendingTrap,
    UpsTrapEmitter,
    parse_targets,
)

PROFILES = load_profiles()
RFC1628 = PROFILES["ups/ietf_rfc1628"]
APC = PROFILES["ups/apc_powernet"]
LOW_BATTERY_ALARM = "1.3.6.1.2.1.33.1.6.3.3"
ON_BATTERY_ALARM = "1.3.6.1.2.1.33.1.6.3.2"
DESCR = "1.3.6.1.2.1.33.1.6.2.1.2"

MAINS = {"output.source": "normal", "battery.status": "batteryNormal", "ups.test.result": "noTestsInitiated"}
BATTERY = {**MAINS, "output.source": "battery"}
LOW = {**BATTERY, "battery.status": "batteryLow"}


def names(pending: list[PendingTrap]) -> list[str]:
    return [trap.name for trap in pending]


def run(emitter: UpsTrapEmitter, timeline: list[tuple[float, dict]]) -> list[tuple[float, PendingTrap]]:
    """Feed (time, values) in order; every trap with the time it was decided."""
    return [(t, trap) for t, values in timeline for trap in emitter.observe(values, t)]


# --- RFC 1628 ---------------------------------------------------------------------------------------

def test_on_battery_is_sent_at_once_and_every_minute_while_on_battery():
    emitter = UpsTrapEmitter(RFC1628)
    timeline = [(0.0, MAINS)] + [(float(t), BATTERY) for t in range(1, 200)] + [(200.0, MAINS), (230.0, MAINS)]
    sent = [t for t, trap in run(emitter, timeline) if trap.name == "upsTrapOnBattery"]
    assert sent == [1.0, 61.0, 121.0, 181.0]


def test_on_battery_resends_from_the_new_episode_after_mains_returned():
    emitter = UpsTrapEmitter(RFC1628)
    timeline = [(0.0, MAINS), (1.0, BATTERY), (30.0, MAINS), (40.0, BATTERY), (99.0, BATTERY), (100.0, BATTERY)]
    sent = [t for t, trap in run(emitter, timeline) if trap.name == "upsTrapOnBattery"]
    assert sent == [1.0, 40.0, 100.0]


def test_on_battery_stops_when_the_ups_turns_off():
    emitter = UpsTrapEmitter(RFC1628)
    off = {**BATTERY, "output.source": "none", "battery.status": "batteryDepleted"}
    timeline = [(0.0, BATTERY), (60.0, off), (120.0, off), (180.0, off)]
    assert [t for t, trap in run(emitter, timeline) if trap.name == "upsTrapOnBattery"] == [0.0]


def test_low_battery_adds_and_removes_an_alarm_row_with_the_well_known_oid():
    emitter = UpsTrapEmitter(RFC1628)
    emitter.observe(MAINS, 0.0)
    going_low = emitter.observe(BATTERY, 1.0) + emitter.observe(LOW, 100.0)
    assert names(going_low) == ["upsTrapOnBattery", "upsTrapOnBattery", "upsTrapAlarmEntryAdded"]
    # row 1 is the silent OnBattery row, so the LowBattery row is 2
    assert going_low[-1].extra_varbinds == ((f"{DESCR}.2", "object_identifier", LOW_BATTERY_ALARM),)
    assert emitter.alarm_rows == {1: ON_BATTERY_ALARM, 2: LOW_BATTERY_ALARM}
    back = emitter.observe(MAINS, 130.0)
    assert [(trap.name, trap.extra_varbinds[0][2]) for trap in back] == [
        ("upsTrapAlarmEntryRemoved", ON_BATTERY_ALARM), ("upsTrapAlarmEntryRemoved", LOW_BATTERY_ALARM)]
    assert emitter.alarm_rows == {}


def test_alarm_ids_increment_and_are_not_reused():
    emitter = UpsTrapEmitter(RFC1628)
    emitter.observe(MAINS, 0.0)
    ids = []
    for episode in range(3):
        t = 100.0 * episode
        for trap in emitter.observe(LOW, t + 10) + emitter.observe(MAINS, t + 50):
            if trap.name != "upsTrapOnBattery":
                ids.append(int(trap.extra_varbinds[0][0].rsplit(".", 1)[1]))
    # each episode: OnBattery row (silent add) and LowBattery row, both removed on return
    assert ids == [2, 1, 2, 4, 3, 4, 6, 5, 6]


def test_on_battery_and_test_in_progress_are_never_announced_as_added():
    emitter = UpsTrapEmitter(RFC1628)
    emitter.observe(MAINS, 0.0)
    added = emitter.observe({**BATTERY, "ups.test.result": "inProgress"}, 10.0)
    assert names(added) == ["upsTrapOnBattery"]
    assert set(emitter.alarm_rows.values()) == {ON_BATTERY_ALARM, "1.3.6.1.2.1.33.1.6.3.24"}
    finished = emitter.observe({**MAINS, "ups.test.result": "donePass"}, 20.0)
    # OnBattery's removal is sent (REFERENCE §1.3: every removal except TestInProgress)
    assert names(finished) == ["upsTrapAlarmEntryRemoved", "upsTrapTestCompleted"]
    assert finished[0].extra_varbinds[0][2] == ON_BATTERY_ALARM


@pytest.mark.parametrize("result", ["donePass", "doneWarning", "doneError", "aborted"])
def test_test_completed_when_the_summary_becomes_a_done_state(result: str):
    emitter = UpsTrapEmitter(RFC1628)
    emitter.observe({**MAINS, "ups.test.result": "inProgress"}, 0.0)
    assert names(emitter.observe({**MAINS, "ups.test.result": result}, 10.0)) == ["upsTrapTestCompleted"]
    assert emitter.observe({**MAINS, "ups.test.result": result}, 20.0) == []


def test_first_observation_is_the_baseline():
    emitter = UpsTrapEmitter(RFC1628)
    first = emitter.observe({**LOW, "ups.test.result": "donePass"}, 0.0)
    # rows that exist at agent start are not announced; the persistent on-battery trap is
    assert names(first) == ["upsTrapOnBattery"]
    assert set(emitter.alarm_rows.values()) == {ON_BATTERY_ALARM, LOW_BATTERY_ALARM}


def test_a_flapping_threshold_sends_the_same_notification_at_most_every_5_s():
    emitter = UpsTrapEmitter(RFC1628)
    emitter.observe(BATTERY, 0.0)
    timeline = [(float(t), LOW if t % 2 else BATTERY) for t in range(1, 12)]
    added = [t for t, trap in run(emitter, timeline) if trap.name == "upsTrapAlarmEntryAdded"]
    assert added == [1.0, 7.0]


def test_raw_enum_codes_work_like_state_names():
    emitter = UpsTrapEmitter(RFC1628)
    raw_mains = {"output.source": 3, "battery.status": 2, "ups.test.result": 6}
    emitter.observe(raw_mains, 0.0)
    assert names(emitter.observe({**raw_mains, "output.source": 5, "battery.status": 3}, 1.0)) == [
        "upsTrapOnBattery", "upsTrapAlarmEntryAdded"]


# --- APC PowerNet -----------------------------------------------------------------------------------

APC_MAINS = {"output.status": "onLine", "battery.status": "batteryNormal", "ups.test.result": "ok"}


def test_apc_power_failure_and_return_with_mtrapargs_text():
    emitter = UpsTrapEmitter(APC)
    assert emitter.observe(APC_MAINS, 0.0) == []
    on_battery = emitter.observe({**APC_MAINS, "output.status": "onBattery"}, 1.0)
    assert names(on_battery) == ["upsOnBattery"]
    ((oid, datatype, text),) = on_battery[0].extra_varbinds
    assert (oid, datatype) == (MTRAPARGS_STRING, "octet_string") and "battery" in text.lower()
    # APC sends it once per transfer, not every minute
    assert emitter.observe({**APC_MAINS, "output.status": "onBattery"}, 90.0) == []
    assert names(emitter.observe(APC_MAINS, 100.0)) == ["powerRestored"]


def test_apc_low_battery_and_return():
    emitter = UpsTrapEmitter(APC)
    battery = {**APC_MAINS, "output.status": "onBattery"}
    timeline = [(0.0, APC_MAINS), (1.0, battery), (50.0, {**battery, "battery.status": "batteryLow"}),
                (60.0, {**APC_MAINS, "battery.status": "batteryLow"}), (70.0, APC_MAINS)]
    assert [(t, trap.name) for t, trap in run(emitter, timeline)] == [
        (1.0, "upsOnBattery"), (50.0, "lowBattery"), (60.0, "powerRestored"), (70.0, "returnFromLowBattery")]


@pytest.mark.parametrize(("result", "trap"), [("ok", "upsDiagnosticsPassed"), ("failed", "upsDiagnosticsFailed")])
def test_apc_self_test_result(result: str, trap: str):
    emitter = UpsTrapEmitter(APC)
    emitter.observe({**APC_MAINS, "ups.test.result": "testInProgress"}, 0.0)
    assert names(emitter.observe({**APC_MAINS, "ups.test.result": result}, 10.0)) == [trap]


def test_apc_has_no_rfc_alarm_table():
    emitter = UpsTrapEmitter(APC)
    emitter.observe(APC_MAINS, 0.0)
    emitter.observe({**APC_MAINS, "output.status": "onBattery", "battery.status": "batteryLow"}, 1.0)
    assert emitter.alarm_rows == {}


def test_a_profile_without_traps_sends_nothing():
    emitter = UpsTrapEmitter(PROFILES["thsensor/apc_netbotz"])
    assert emitter.observe({}, 0.0) == [] and emitter.observe({"output.source": "battery"}, 1.0) == []


def test_trap_targets_parse_like_the_site_config_writes_them():
    assert parse_targets(["127.0.0.1:16162", "[::1]:162", "nms.example:10162"]) == [
        ("127.0.0.1", 16162), ("::1", 162), ("nms.example", 10162)]
