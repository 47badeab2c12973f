"""The coupled power chain: utility → ATS ← generator, essential bus → UPSs (REFERENCE.md §1, §2, §3.1, §7).

Pure: a Plant built from a small site file, stepped in simulated seconds; no sockets, no sleeps.
"""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path

import pytest

from collectors import codec
from collectors.model import Quality
from config.load import Site, load_site
from simulators.devices.ats import OPERATION_S
from simulators.devices.genset import CRANK_ATTEMPT_S, CRANK_REST_S, sfc_l_per_kwh
from simulators.plant import Plant
from simulators.site import unit_id_of

START_TIME_S = 8.0
TRANSFER_DELAY_S = 2.0
RETRANSFER_DELAY_S = 300.0
COOLDOWN_S = 300.0
RATED_KW = 200.0
# RFC UPS 100 kW and APC UPS 40 kW, both at 50 % load with 10 min at full load, k = 1.2
PEUKERT_RUNTIME_MIN = 10.0 * 2**1.2  # 22.97 min at half load (REFERENCE.md §7.4)
IT_KW = 0.5 * 100 + 0.5 * 40
# REFERENCE.md §7.2: L/kWh at 25 / 50 / 75 / 100 % load
REFERENCE_SFC = ((0.25, 0.33), (0.50, 0.28), (0.75, 0.26), (1.00, 0.27))

GENERATOR = """
  - {{id: gen-1, class: genset, profile: genset/dse_gencomm, room: plant, host: 127.0.0.1, port: 15021,
     simulation: {{rated_kw: {rated_kw}, start_time_s: {start}, tank_litres: 2000, fuel_pct: 80, cooldown_s: {cooldown},
                  noise: 0}}}}"""
ATS = """
  - {{id: ats-1, class: ats, profile: ats/facwatch_ats, room: plant, host: 127.0.0.1, port: 15022,
     simulation: {{transfer_delay_s: {delay}, retransfer_delay_s: {retransfer}}}}}"""
SITE = """
site: {{id: pc, name: Power chain}}
credentials:
  lab: {{type: snmp_community, community: {{file: community}}, insecure: true}}
rooms: [{{id: dh1, name: Data hall 1}}, {{id: plant, name: Plant room}}]
devices:
  - {{id: ups-a, class: ups, profile: ups/ietf_rfc1628, room: plant, host: 127.0.0.1, port: 16161, credential: lab,
     snmp: {{version: "2c"}},
     simulation: {{rated_power_w: 100000, load_fraction: 0.5, runtime_full_load_min: 10, peukert_exponent: 1.2,
                  noise: 0}}}}
  - {{id: ups-b, class: ups, profile: ups/apc_powernet, room: plant, host: 127.0.0.1, port: 16162, credential: lab,
     snmp: {{version: "2c"}},
     simulation: {{rated_power_w: 40000, load_fraction: 0.5, runtime_full_load_min: 10, peukert_exponent: 1.2,
                  noise: 0}}}}{generator}{ats}
simulation:
  room_it_load_kw: {room_kw}
"""


def write_site(tmp_path: Path, *, generator: bool = True, ats: bool = True, rated_kw: float = RATED_KW,
               room_kw: str = "{}") -> Site:
    """UPS A (RFC 1628) and UPS B (APC) behind an ATS with one DSE generator, unless told otherwise."""
    (tmp_path / "community").write_text("public\n")
    text = SITE.format(
        generator=GENERATOR.format(rated_kw=rated_kw, start=START_TIME_S, cooldown=COOLDOWN_S) if generator else "",
        ats=ATS.format(delay=TRANSFER_DELAY_S, retransfer=RETRANSFER_DELAY_S) if ats else "",
        room_kw=room_kw)
    path = tmp_path / "site.yaml"
    path.write_text(text)
    return load_site(path)


class Chain:
    """A plant, the views of its power devices, and a clock."""

    def __init__(self, site: Site, seed: int = 1):
        self.site = site
        self.plant = Plant(site, seed)
        self.power = self.plant.power
        self.views = {device.id: self.plant.model_for(device, site.profile(device),
                                                      unit_id_of(device, site.profile(device)))
                      for device in site.devices}
        self.t = 0.0

    def run(self, seconds: float) -> None:
        for _ in range(round(seconds)):
            self.plant.step(1.0)
            self.t += 1.0

    def until(self, condition, limit_s: float = 3600.0) -> float:
        """Step 1 s at a time until condition() holds; the simulated seconds it took."""
        start = self.t
        while not condition():
            assert self.t - start < limit_s, "condition never reached"
            self.run(1)
        return self.t - start

    def value(self, device_id: str, point: str) -> float | str:
        return self.views[device_id].values()[point]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Site:
    """The standard site, loaded once (loading profiles is the slow part)."""
    return write_site(tmp_path_factory.mktemp("site"))


@pytest.fixture
def chain(site) -> Chain:
    return Chain(site)


def reference_sfc(load_fraction: float) -> float:
    """REFERENCE.md §7.2, interpolated linearly (written out again so the model is checked, not reused)."""
    for (x0, y0), (x1, y1) in pairwise(REFERENCE_SFC):
        if x0 <= load_fraction <= x1:
            return y0 + (y1 - y0) * (load_fraction - x0) / (x1 - x0)
    raise AssertionError(f"load {load_fraction} outside the reference table")


def on_generator_after_outage(chain: Chain) -> None:
    chain.power.set_utility(False)
    chain.until(lambda: chain.power.ats_position == "generator", limit_s=30)
    chain.run(5)


# --- mains failure -----------------------------------------------------------------------------------


def test_a_mains_failure_puts_every_ups_on_battery_within_one_step(chain):
    chain.power.set_utility(False)
    chain.run(1)
    assert not chain.power.essential_bus_live
    assert chain.power.ats_position == "open"
    assert chain.value("ups-a", "output.source") == "battery"
    assert chain.value("ups-b", "output.status") == "onBattery"
    assert chain.value("ups-b", "input.fail_cause") == "blackout"
    assert chain.value("ats-1", "ats.mains_available") == "unavailable"


def test_the_generator_is_at_rated_voltage_and_frequency_within_its_start_time(chain):
    gen = chain.power.generator()
    chain.power.set_utility(False)
    chain.run(1)
    assert chain.value("gen-1", "engine.state") == "pre_start"
    chain.run(START_TIME_S - 2)
    assert gen.engine_state == "warming_up" and gen.rpm < 1500  # still running up
    chain.run(1)
    assert chain.value("gen-1", "engine.state") == "running"
    assert chain.value("gen-1", "engine.speed") == pytest.approx(1500)
    assert chain.value("gen-1", "genset.L1.voltage") == pytest.approx(230)
    assert chain.value("gen-1", "genset.frequency") == pytest.approx(50)
    assert chain.value("gen-1", "genset.L1-L2.voltage") == pytest.approx(230 * 3**0.5, rel=0.005)
    assert chain.value("gen-1", "mains.L1.voltage") == 0  # the controller watches the dead utility too


def test_the_ats_takes_the_generator_after_the_transfer_delay_within_nfpa_type_10(chain):
    chain.power.set_utility(False)
    chain.run(START_TIME_S)
    assert chain.power.ats_position == "open"  # rated, but not yet stable for the transfer delay
    chain.run(TRANSFER_DELAY_S)
    assert chain.power.ats_position == "generator"
    assert chain.power.essential_bus_live
    ats = chain.views["ats-1"].values()
    assert ats["ats.transfers"] == 49
    assert ats["ats.generator_available"] == "available"
    # the load was dead from the failure until the contacts closed: NFPA 110 Type 10 (REFERENCE.md §7.1)
    assert START_TIME_S - 1 < ats["ats.last_transfer.duration"] <= START_TIME_S + TRANSFER_DELAY_S + OPERATION_S
    assert ats["ats.last_transfer.duration"] <= 10.0
    assert ats["ats.last_transfer"] == int(chain.power.epoch_at_start + ats["ats.last_transfer.duration"])


def test_on_the_generator_the_ups_is_back_on_its_rectifier_and_recharging(chain):
    on_generator_after_outage(chain)
    ups = chain.views["ups-a"]
    charge = ups.core.charge_fraction
    assert chain.value("ups-a", "output.source") == "normal"
    assert chain.value("ups-a", "input.voltage") == pytest.approx(230)
    assert chain.value("ups-a", "battery.current") > 0
    assert charge < 1.0
    chain.run(10)
    assert ups.core.charge_fraction > charge
    assert chain.value("ups-b", "output.status") == "onLine"
    assert chain.value("ups-b", "battery.charger.status") in ("boostCharging", "floatCharging")


def test_the_generator_carries_the_ups_input_and_the_cooling(chain):
    on_generator_after_outage(chain)
    gen = chain.power.generator()
    # RFC 1628 serves upsInputTruePower; PowerNet has no input power object, so UPS B is read from its core
    ups_input_kw = (chain.value("ups-a", "input.realpower") + chain.views["ups-b"].core.input_power_w) / 1000
    cooling_kw = 0.35 * IT_KW
    assert gen.load_kw == pytest.approx(ups_input_kw + cooling_kw, rel=0.01)
    assert chain.value("gen-1", "genset.power") == pytest.approx(gen.load_kw * 1000)
    assert chain.value("gen-1", "genset.load") == pytest.approx(100 * gen.load_kw / RATED_KW)
    phases = sum(chain.value("gen-1", f"genset.L{n}.power") for n in (1, 2, 3))
    assert phases == pytest.approx(gen.load_kw * 1000)
    assert chain.value("ats-1", "ats.generator.voltage") == pytest.approx(230)


def test_fuel_burns_at_the_specific_consumption_for_the_load(chain):
    on_generator_after_outage(chain)
    gen = chain.power.generator()
    litres, expected = gen.fuel_l, 0.0
    for _ in range(600):  # 10 simulated minutes
        chain.run(1)
        expected += gen.load_kw * reference_sfc(gen.load_kw / RATED_KW) / 3600
    assert 0.25 < gen.load_kw / RATED_KW < 1.0
    assert litres - gen.fuel_l == pytest.approx(expected, rel=0.02)
    assert chain.value("gen-1", "fuel.level") == pytest.approx(100 * gen.fuel_l / 2000)


def test_utility_return_retransfers_after_the_delay_then_cools_down_and_stops(chain):
    gen = chain.power.generator()
    run_s, starts, transfers = gen.run_s, gen.starts, chain.power.ats.transfers
    chain.power.set_utility(False)
    chain.run(60)
    chain.power.set_utility(True)
    chain.run(RETRANSFER_DELAY_S - 1)
    assert chain.power.ats_position == "generator"
    chain.run(1)
    assert chain.power.ats_position == "mains"
    assert chain.value("ats-1", "ats.last_transfer.duration") == pytest.approx(OPERATION_S)
    chain.run(1)
    assert chain.value("gen-1", "engine.state") == "cooling_down"
    assert gen.load_kw == 0  # cool-down runs unloaded
    chain.run(COOLDOWN_S - 2)
    assert gen.engine_state == "cooling_down"
    chain.run(1)
    assert chain.value("gen-1", "engine.state") == "stopped"
    assert chain.value("gen-1", "engine.speed") == 0
    # it fired 3 s after the failure (2 s pre-start, 1 s cranking) and stopped at 60 + 300 + 300 s
    assert gen.run_s - run_s == pytest.approx(60 + RETRANSFER_DELAY_S + COOLDOWN_S - 3, abs=1)
    assert chain.value("gen-1", "engine.starts") == starts + 1
    assert chain.power.ats.transfers == transfers + 2
    assert chain.value("ups-a", "output.source") == "normal"


def test_engine_warms_and_the_starter_battery_dips_then_charges(chain):
    gen = chain.power.generator()
    assert chain.value("gen-1", "engine.battery_voltage") == pytest.approx(12.8)
    assert chain.value("gen-1", "engine.coolant_temperature") == pytest.approx(40)
    chain.power.set_utility(False)
    chain.run(2)
    assert gen.phase == "cranking"
    chain.run(1)
    assert chain.value("gen-1", "engine.battery_voltage") < 11
    chain.run(15 * 60)
    assert 13.8 <= chain.value("gen-1", "engine.battery_voltage") <= 14.0
    assert chain.value("gen-1", "engine.coolant_temperature") > 70
    assert chain.value("gen-1", "engine.oil_pressure") > 300


# --- fail to start -------------------------------------------------------------------------------------


def test_a_generator_that_fails_to_start_cranks_three_times_then_shuts_down(chain):
    gen = chain.power.generator()
    chain.power.set_generator_fails_to_start(True)
    chain.power.set_utility(False)
    phases = []
    for _ in range(60):
        chain.run(1)
        phases.append(str(gen.phase))
    cranks = [i for i, (a, b) in enumerate(pairwise(["stopped", *phases]))
              if b == "cranking" and a != "cranking"]
    assert len(cranks) == 3
    assert all(b - a == CRANK_ATTEMPT_S + CRANK_REST_S for a, b in pairwise(cranks))
    assert phases.count("cranking") == 3 * CRANK_ATTEMPT_S
    assert gen.crank_attempts == 3
    assert phases[-1] == "stopped"
    values = chain.views["gen-1"].values()
    assert values["alarm.fail_to_start"] == "shutdown"
    assert values["engine.state"] == "stopped" and values["engine.speed"] == 0
    assert values["genset.mode"] == "auto"
    assert chain.power.ats_position == "open"


def test_without_the_generator_the_ups_rides_its_battery_down_as_peukert_says(chain):
    chain.power.set_generator_fails_to_start(True)
    chain.power.set_utility(False)
    chain.run(5 * 60)
    assert chain.value("ups-a", "battery.runtime") == pytest.approx(PEUKERT_RUNTIME_MIN - 5, abs=0.05)
    assert chain.value("ups-b", "battery.runtime") == pytest.approx(PEUKERT_RUNTIME_MIN - 5, abs=0.05)
    # batteryLow once the runtime left is at most upsConfigLowBattTime (5 min)
    chain.run((PEUKERT_RUNTIME_MIN - 5 - 5) * 60 - 6)
    assert chain.value("ups-a", "battery.status") == "batteryNormal"
    chain.run(12)
    assert chain.value("ups-a", "battery.status") == "batteryLow"
    assert chain.value("ups-b", "battery.status") == "batteryLow"
    chain.run(5 * 60)
    assert chain.value("ups-a", "output.source") == "none"
    assert chain.value("ups-a", "battery.status") == "batteryDepleted"
    assert chain.value("ups-b", "output.status") == "off"
    assert chain.power.it_load_kw("dh1") == 0


def test_a_reset_lets_the_generator_start_again(chain):
    chain.power.set_generator_fails_to_start(True)
    chain.power.set_utility(False)
    chain.run(40)
    chain.power.set_generator_fails_to_start(False)
    chain.run(5)
    assert chain.power.generator().engine_state == "stopped"  # latched until someone resets it
    chain.power.reset_generator_alarms()
    chain.run(START_TIME_S + TRANSFER_DELAY_S + 1)
    assert chain.power.ats_position == "generator"
    assert chain.value("gen-1", "alarm.fail_to_start") == "inactive"


# --- generator tests -------------------------------------------------------------------------------------


def test_monthly_test_on_load_carries_30_percent_of_nameplate_for_30_minutes(chain):
    gen = chain.power.generator()
    chain.power.start_generator_test(on_load=True)
    chain.until(lambda: chain.power.ats_position == "generator", limit_s=20)
    assert chain.value("gen-1", "genset.mode") == "test_on_load"
    assert chain.value("ats-1", "ats.mode") == "test"
    chain.run(1)
    loads = []
    for _ in range(30 * 60):
        chain.run(1)
        loads.append(gen.load_kw / RATED_KW)
        assert chain.power.ats_position == "generator"
    assert min(loads) >= 0.30  # NFPA 110 §8.4.2 (REFERENCE.md §7.1)
    assert chain.power.utility_available
    assert chain.value("ups-a", "output.source") == "normal"
    chain.power.end_generator_test()
    chain.run(2)
    assert chain.power.ats_position == "mains"
    assert chain.value("gen-1", "engine.state") == "cooling_down"
    assert chain.value("gen-1", "genset.mode") == "auto"
    chain.run(COOLDOWN_S)
    assert gen.engine_state == "stopped"


def test_an_off_load_test_runs_the_set_and_keeps_the_ats_on_mains(chain):
    gen = chain.power.generator()
    line_bads = chain.value("ups-a", "input.line_bads")
    chain.power.start_generator_test(on_load=False)
    chain.run(120)
    assert gen.engine_state == "running"
    assert chain.value("gen-1", "genset.mode") == "test_off_load"
    assert chain.value("gen-1", "genset.power") == 0
    assert chain.power.ats_position == "mains"
    assert chain.value("ats-1", "ats.mode") == "auto"
    assert chain.value("ats-1", "ats.generator_available") == "available"
    assert chain.value("ups-a", "input.line_bads") == line_bads
    chain.power.end_generator_test()
    chain.run(1)
    assert gen.engine_state == "cooling_down"


def test_an_on_load_transfer_is_a_short_open_transition_break(chain):
    chain.power.start_generator_test(on_load=True)
    chain.until(lambda: chain.power.ats_position == "generator", limit_s=20)
    chain.run(1)
    assert chain.value("ats-1", "ats.last_transfer.duration") == pytest.approx(OPERATION_S)
    assert chain.value("ups-a", "input.line_bads") == 1  # the UPS bridged the 0.1 s gap on battery
    assert chain.value("ups-a", "output.source") == "normal"


# --- UPS self-test ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("result", "rfc", "apc"), [
    ("pass", "donePass", "ok"), ("warning", "doneWarning", "ok"), ("fail", "doneError", "failed"),
])
def test_a_ups_self_test_runs_on_battery_for_10_s_then_reports(chain, result, rfc, apc):
    chain.power.start_ups_self_test(result=result)
    today = datetime.fromtimestamp(chain.power.epoch_now_s, tz=UTC).strftime("%m/%d/%y")
    chain.run(1)
    assert chain.value("ups-a", "ups.test.result") == "inProgress"
    assert chain.value("ups-a", "output.source") == "battery"
    assert chain.value("ups-b", "ups.test.result") == "testInProgress"
    assert chain.value("ups-b", "output.status") == "onBatteryTest"
    chain.run(9)
    assert chain.value("ups-a", "ups.test.result") == rfc
    assert chain.value("ups-a", "output.source") == "normal"
    assert chain.value("ups-b", "ups.test.result") == apc
    assert chain.value("ups-b", "output.status") == "onLine"
    assert chain.value("ups-b", "ups.test.date") == today
    assert chain.value("ups-b", "input.fail_cause") == "selfTest"
    assert chain.value("ups-a", "input.line_bads") == 0  # a test is not a mains problem
    failed = result == "fail"
    assert chain.value("ups-b", "battery.replace") == ("batteryNeedsReplacing" if failed else "noBatteryNeedsReplacing")
    assert ("upsAlarmDiagnosticTestFailed" in chain.views["ups-a"].alarms()) == failed


def test_a_self_test_needs_mains_and_a_known_result(chain):
    chain.power.set_utility(False)
    chain.run(1)
    chain.power.start_ups_self_test("ups-b")
    assert chain.value("ups-b", "ups.test.result") == "invalidTest"
    assert chain.value("ups-a", "ups.test.result") == "noTestsInitiated"  # only ups-b was asked
    with pytest.raises(ValueError, match="pass"):
        chain.power.start_ups_self_test(result="maybe")
    with pytest.raises(ValueError, match="no UPS 'ups-z'"):
        chain.power.start_ups_self_test("ups-z")


# --- topology ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ats", [True, False])
def test_without_a_generator_the_ups_sits_on_the_utility(tmp_path, ats):
    chain = Chain(write_site(tmp_path, generator=False, ats=ats))
    chain.power.set_utility(False)
    chain.run(30)
    assert chain.value("ups-a", "output.source") == "battery"
    assert chain.power.cooling_load_kw == 0
    with pytest.raises(ValueError, match="no generator"):
        chain.power.generator()
    chain.power.set_utility(True)
    chain.run(1)
    assert chain.power.essential_bus_live
    assert chain.value("ups-a", "output.source") == "normal"


def test_it_load_follows_configured_room_proportions(tmp_path):
    chain = Chain(write_site(tmp_path, room_kw="{dh1: 60}"))
    chain.run(1)
    total = chain.power.it_total_kw()
    assert total == pytest.approx(IT_KW)
    assert chain.power.it_load_kw("dh1") == pytest.approx(60)
    assert chain.power.it_load_kw("plant") == pytest.approx(IT_KW - 60)  # unlisted rooms share the rest
    assert chain.power.it_load_kw("elsewhere") == 0


def test_without_configured_loads_rooms_share_the_ups_output_evenly(chain):
    assert chain.power.it_load_kw("dh1") == pytest.approx(IT_KW / 2)
    assert chain.power.it_load_kw("plant") == pytest.approx(IT_KW / 2)


def test_unknown_generator_is_refused(chain):
    with pytest.raises(ValueError, match="no generator 'gen-9'"):
        chain.power.start_generator_test(generator_id="gen-9")


def test_specific_fuel_consumption_follows_the_reference_curve():
    for load, sfc in REFERENCE_SFC:
        assert sfc_l_per_kwh(load) == pytest.approx(sfc)
    assert sfc_l_per_kwh(0.6) == pytest.approx(reference_sfc(0.6))
    assert sfc_l_per_kwh(0.5, full_load_sfc=0.24) == pytest.approx(0.28 * 0.24 / 0.27)


def test_a_seed_replays_the_same_chain(site):
    runs = []
    for _ in range(2):
        chain = Chain(site, seed=7)
        chain.power.set_utility(False)
        chain.run(120)
        runs.append({device: view.values() for device, view in chain.views.items()})
    # the wall-clock epoch differs between plants; everything else is the seed's
    for values in runs:
        values["ats-1"].pop("ats.last_transfer")
        for point in ("battery.date", "ups.test.date"):
            values["ups-b"].pop(point)
    assert runs[0] == runs[1]


# --- every view serves every point ---------------------------------------------------------------------------


def drive(chain: Chain, state: str) -> None:
    """Put the plant in one of a few telling states."""
    if state == "outage":
        chain.power.set_utility(False)
        chain.run(3)
    elif state == "on_generator":
        on_generator_after_outage(chain)
    elif state == "depleted":
        chain.power.set_generator_fails_to_start(True)
        chain.power.set_utility(False)
        chain.run(25 * 60)
    elif state == "self_test":
        chain.power.start_ups_self_test(result="fail")
        chain.run(3)


# codes the device itself uses for "no value now" (PowerNet efficiency -3 output off, -4 on battery)
NO_VALUE_POINTS = {"output.efficiency"}


@pytest.mark.parametrize("state", ["normal", "outage", "on_generator", "depleted", "self_test"])
@pytest.mark.parametrize("device_id", ["ups-a", "ups-b", "gen-1", "ats-1"])
def test_every_view_serves_every_point_of_its_profile(site, device_id, state):
    chain = Chain(site)
    drive(chain, state)
    profile = chain.site.profile(chain.site.device(device_id))
    values = chain.views[device_id].values()
    assert set(values) == {spec.name for spec in profile.points}
    for spec in profile.points:
        raw = codec.encode(spec, values[spec.name])
        if spec.bits is not None:  # a bit field travels inside its register word
            raw = codec.insert_bits(spec, 0, raw)  # type: ignore[arg-type]
        _, quality, text = codec.decode(spec, raw)
        expected = {Quality.GOOD, Quality.MISSING} if spec.name in NO_VALUE_POINTS else {Quality.GOOD}
        assert quality in expected, f"{spec.name} = {values[spec.name]!r} → {quality} {text}"
        if spec.enum and isinstance(values[spec.name], str):
            assert text == values[spec.name], spec.name
