"""The collector's scheduling, on a virtual clock: fake pollers at the seam, no sockets, no real sleeps."""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import selectors
from collections.abc import Callable
from pathlib import Path

import pytest

from collectors.model import POLL_DURATION_POINT, REACHABLE_POINT, Quality, Reading
from collectors.profile import PROFILE_DIR, load_profile
from collectors.scheduler import (
    MAX_BACKOFF_S,
    Collector,
    PollResult,
    backoff_delay,
    make_poller,
    next_deadline,
    poll_budget,
)
from config.load import Site
from config.schema import Device, ModbusOptions, Room, SiteConfig, SiteInfo, SnmpOptions

PROFILES = {pid: load_profile(PROFILE_DIR / f"{pid}.yaml", pid)  # only ours: others edit theirs
            for pid in ("ups/ietf_rfc1628", "thsensor/generic_xymd02")}


# --- a virtual-time event loop: when nothing is ready, the clock jumps to the next timer -----------

class _JumpingSelector(selectors.SelectSelector):
    def __init__(self, loop: VirtualTimeLoop):
        super().__init__()
        self._loop = loop

    def select(self, timeout: float | None = None):
        events = super().select(0)
        if events or timeout == 0:
            return events
        if timeout is None:
            raise RuntimeError("deadlock: nothing scheduled and nothing ready")
        self._loop.now += timeout
        return events


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """asyncio.sleep / asyncio.timeout / loop.time all run on virtual seconds that cost no real time."""

    def __init__(self) -> None:
        self.now = 1000.0
        super().__init__(_JumpingSelector(self))

    def time(self) -> float:
        return self.now


def run_virtual(main: Callable[[], object]) -> object:
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(main())
    finally:
        loop.close()


async def run_for(collector: Collector, seconds: float) -> None:
    async with collector:
        await asyncio.sleep(seconds)


# --- fakes at the poller seam ------------------------------------------------------------------------

Script = Callable[[int], tuple[float, PollResult]]  # poll number (1-based) -> (duration, result)


class FakePoller:
    """Records when polls start and end; each poll takes the scripted (virtual) time and result."""

    def __init__(self, device_id: str, script: Script):
        self.device_id = device_id
        self.script = script
        self.starts: list[float] = []
        self.ends: list[float] = []
        self.running = 0
        self.max_running = 0
        self.closed = False

    async def poll(self) -> PollResult:
        loop = asyncio.get_running_loop()
        self.starts.append(loop.time())
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            duration, result = self.script(len(self.starts))
            await asyncio.sleep(duration)
            return result
        finally:
            self.running -= 1
            self.ends.append(loop.time())

    async def close(self) -> None:
        self.closed = True


def ok(device_id: str, duration: float = 0.1) -> Script:
    reading = Reading(device_id, "ambient.temperature", 0.0, 21.5)
    return lambda n: (duration, PollResult([reading], None, 1))


def dead(duration: float = 0.5) -> Script:
    return lambda n: (duration, PollResult([], "127.0.0.1:1: No SNMP response received before timeout", 2))


def device(device_id: str, interval: float = 1.0, protocol: str = "modbus", **extra: object) -> Device:
    if protocol == "snmp":
        return Device(id=device_id, device_class="ups", profile="ups/ietf_rfc1628", room="r1", host="127.0.0.1",
                      port=22161, poll_interval_s=interval,
                      snmp=extra.get("snmp", SnmpOptions(version="2c", timeout_s=0.5, retries=1)))
    return Device(id=device_id, device_class="thsensor", profile="thsensor/generic_xymd02", room="r1",
                  host="127.0.0.1", port=22502, poll_interval_s=interval,
                  modbus=extra.get("modbus", ModbusOptions(timeout_s=0.5, retries=0)))


def make_site(*devices: Device) -> Site:
    config = SiteConfig(site=SiteInfo(id="t", name="test"), rooms=[Room(id="r1", name="Room")], devices=list(devices))
    return Site(config, PROFILES, {}, Path("/nonexistent/site.yaml"))


class Harness:
    """A collector over fake pollers, with a list sink and a fake wall clock."""

    def __init__(self, scripts: dict[str, Script], devices: list[Device], seed: int = 1):
        self.pollers = {d.id: FakePoller(d.id, scripts[d.id]) for d in devices}
        self.batches: list[list[Reading]] = []
        self.collector = Collector(make_site(*devices), self.batches.append, clock=lambda: 1.7e9,
                                   poller_factory=lambda dev, profile, cred: self.pollers[dev.id],
                                   rng=random.Random(seed))

    def run(self, seconds: float) -> None:
        run_virtual(lambda: run_for(self.collector, seconds))


def gaps(times: list[float]) -> list[float]:
    return [round(b - a, 6) for a, b in itertools.pairwise(times)]


# --- pure helpers ------------------------------------------------------------------------------------

def test_backoff_doubles_from_the_interval_and_caps_at_five_minutes():
    assert [backoff_delay(10, n) for n in range(1, 8)] == [10, 20, 40, 80, 160, 300, 300]
    assert backoff_delay(10, 1000) == MAX_BACKOFF_S


def test_backoff_never_shorter_than_the_interval():
    assert backoff_delay(600, 3) == 600


def test_next_deadline_without_overrun_is_one_interval_later():
    assert next_deadline(100.0, 1.0, 100.4) == (101.0, 0)


def test_next_deadline_skips_the_deadlines_an_overrun_passed():
    assert next_deadline(100.0, 1.0, 102.5) == (103.0, 2)


def test_poll_budget_covers_every_planned_request_plus_margin():
    # thsensor profile plans 2 reads; timeout 0.5 s × (0 retries + 1) each, + 1 s margin
    assert poll_budget(device("a"), PROFILES["thsensor/generic_xymd02"]) == pytest.approx(2.0)


# --- scheduling --------------------------------------------------------------------------------------

def test_first_poll_is_jittered_within_the_interval():
    devices = [device(f"d{i}", interval=10.0) for i in range(8)]
    harness = Harness({d.id: ok(d.id) for d in devices}, devices)
    harness.run(9.99)
    firsts = [p.starts[0] - 1000.0 for p in harness.pollers.values()]
    assert all(0 <= t < 10.0 for t in firsts)
    assert len(set(firsts)) == len(firsts)  # devices do not all fire at once


def test_polls_run_at_a_fixed_rate_without_drift():
    harness = Harness({"a": ok("a", duration=0.3)}, [device("a", interval=1.0)])
    harness.run(20.5)
    assert gaps(harness.pollers["a"].starts) == [1.0] * (len(harness.pollers["a"].starts) - 1)
    assert len(harness.pollers["a"].starts) >= 19


def test_overrunning_poll_skips_deadlines_and_counts_them():
    slow = device("a", interval=1.0, modbus=ModbusOptions(timeout_s=2.0, retries=0))  # budget 5 s
    harness = Harness({"a": ok("a", duration=2.5)}, [slow])
    harness.run(30)
    poller = harness.pollers["a"]
    assert poller.max_running == 1  # never two polls of one device at once
    assert set(gaps(poller.starts)) == {3.0}  # 2 deadlines skipped each time, not piled up
    assert all(start >= end for start, end in zip(poller.starts[1:], poller.ends, strict=False))
    status = harness.collector.status()["a"]
    assert status.reachable is True
    assert status.overruns == 2 * status.polls


def test_unreachable_device_backs_off_exponentially():
    harness = Harness({"a": dead(duration=0.5)}, [device("a", interval=1.0)])
    harness.run(70)
    poller = harness.pollers["a"]
    waits = [round(start - end, 6) for start, end in zip(poller.starts[1:], poller.ends, strict=False)]
    assert waits == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0][: len(waits)]
    assert len(waits) == 6
    status = harness.collector.status()["a"]
    assert (status.reachable, status.consecutive_failures) == (False, 7)
    assert "No SNMP response" in status.last_error


def test_recovered_device_returns_to_its_interval():
    script = lambda n: dead()(n) if n <= 3 else ok("a")(n)  # noqa: E731
    harness = Harness({"a": script}, [device("a", interval=1.0)])
    harness.run(20)
    starts = harness.pollers["a"].starts
    assert gaps(starts)[4:] == [1.0] * len(gaps(starts)[4:])
    assert harness.collector.status()["a"].reachable is True


def test_down_and_up_are_logged_once_each(caplog):
    script = lambda n: dead()(n) if 3 <= n <= 6 else ok("a")(n)  # noqa: E731
    harness = Harness({"a": script}, [device("a", interval=1.0)])
    with caplog.at_level(logging.INFO, logger="collectors.scheduler"):
        harness.run(60)
    messages = [r.getMessage() for r in caplog.records]
    down = [m for m in messages if "unreachable" in m]
    up = [m for m in messages if "reachable again" in m]
    assert len(down) == 1 and "No SNMP response received before timeout" in down[0]
    assert len(up) == 1 and "(4 failed polls)" in up[0]


def test_outage_duration_in_recovery_log_uses_the_wall_clock(caplog):
    times = iter(float(t) for t in range(100, 10_000, 7))
    script = lambda n: dead()(n) if n == 2 else ok("a")(n)  # noqa: E731
    devices = [device("a", interval=1.0)]
    pollers = {"a": FakePoller("a", script)}
    collector = Collector(make_site(*devices), lambda batch: None, clock=lambda: next(times),
                          poller_factory=lambda dev, profile, cred: pollers[dev.id], rng=random.Random(1))
    with caplog.at_level(logging.INFO, logger="collectors.scheduler"):
        run_virtual(lambda: run_for(collector, 5))
    assert any("reachable again after 7.0 s (1 failed polls)" in r.getMessage() for r in caplog.records)


def test_readings_and_health_readings_reach_the_sink_stamped_with_acquisition_time():
    harness = Harness({"a": ok("a", duration=0.25)}, [device("a", interval=1.0)])
    harness.run(1.5)
    batch = harness.batches[0]
    by_point = {r.point: r for r in batch}
    assert {r.ts for r in batch} == {1.7e9}
    assert by_point["ambient.temperature"].value == 21.5
    assert (by_point[REACHABLE_POINT].value, by_point[REACHABLE_POINT].text) == (1.0, "reachable")
    assert by_point[POLL_DURATION_POINT].value == pytest.approx(0.25)
    assert by_point[POLL_DURATION_POINT].quality is Quality.GOOD


def test_unreachable_poll_delivers_only_health_readings():
    harness = Harness({"a": dead(duration=0.5)}, [device("a", interval=1.0)])
    harness.run(1.5)
    batch = harness.batches[0]
    assert {r.point for r in batch} == {REACHABLE_POINT, POLL_DURATION_POINT}
    reach = next(r for r in batch if r.point == REACHABLE_POINT)
    assert (reach.value, reach.text) == (0.0, "unreachable")


def test_hung_device_is_cut_at_its_budget_and_never_delays_another_device():
    hung = lambda n: (10_000.0, PollResult([], None, 1))  # noqa: E731 - a poll that would never return
    devices = [device("live", interval=1.0), device("hung", interval=1.0)]
    harness = Harness({"live": ok("live", duration=0.05), "hung": hung}, devices)
    harness.run(60)
    live = harness.pollers["live"].starts
    assert set(gaps(live)) == {1.0}
    assert len(live) >= 59
    status = harness.collector.status()["hung"]
    assert status.reachable is False
    assert "poll budget" in status.last_error
    budget = poll_budget(devices[1], PROFILES["thsensor/generic_xymd02"])
    hung_poller = harness.pollers["hung"]
    assert all(end - start == pytest.approx(budget)
               for start, end in zip(hung_poller.starts, hung_poller.ends, strict=False))


def test_poller_exception_marks_device_down_and_polling_goes_on():
    def script(n: int) -> tuple[float, PollResult]:
        if n == 1:
            raise ValueError("garbage frame")
        return ok("a")(n)

    harness = Harness({"a": script}, [device("a", interval=1.0)])
    harness.run(5)
    assert len(harness.pollers["a"].starts) >= 4
    assert harness.collector.status()["a"].reachable is True
    first = {r.point: r for r in harness.batches[0]}
    assert first[REACHABLE_POINT].value == 0.0


def test_failing_sink_does_not_stop_polling(caplog):
    calls = []

    def sink(batch: list[Reading]) -> None:
        calls.append(batch)
        raise RuntimeError("queue full")

    devices = [device("a", interval=1.0)]
    pollers = {"a": FakePoller("a", ok("a"))}
    collector = Collector(make_site(*devices), sink, poller_factory=lambda dev, profile, cred: pollers[dev.id],
                          rng=random.Random(1))
    with caplog.at_level(logging.ERROR, logger="collectors.scheduler"):
        run_virtual(lambda: run_for(collector, 5))
    assert len(calls) >= 4


def test_point_errors_keep_the_device_reachable_and_are_logged_once(caplog):
    partial = PollResult([Reading("a", "ambient.temperature", 0, None, Quality.MISSING)],
                         "127.0.0.1:22502 unit 1: input 1+2: exception 2 (illegal data address)", 1)
    harness = Harness({"a": lambda n: (0.1, partial)}, [device("a", interval=1.0)])
    with caplog.at_level(logging.WARNING, logger="collectors.scheduler"):
        harness.run(10)
    status = harness.collector.status()["a"]
    assert status.reachable is True and "exception 2" in status.last_error
    assert sum("answered with errors" in r.getMessage() for r in caplog.records) == 1


def test_status_counts_polls_and_requests():
    harness = Harness({"a": ok("a")}, [device("a", interval=1.0)])
    harness.run(10.5)
    status = harness.collector.status()["a"]
    assert status.polls == len(harness.pollers["a"].starts)
    assert status.requests == status.polls
    assert status.last_ok_ts == 1.7e9
    assert (status.consecutive_failures, status.overruns, status.last_error) == (0, 0, None)


def test_status_is_a_snapshot():
    harness = Harness({"a": ok("a")}, [device("a", interval=1.0)])
    harness.run(2)
    harness.collector.status()["a"].polls = 999
    assert harness.collector.status()["a"].polls != 999


def test_stop_closes_every_poller():
    devices = [device("a"), device("b")]
    harness = Harness({"a": ok("a"), "b": ok("b")}, devices)
    harness.run(3)
    assert all(p.closed for p in harness.pollers.values())


class CancelSwallowingPoller(FakePoller):
    """Returns its reply when cancelled, as Python 3.11's asyncio.wait_for does when both arrive together."""

    async def poll(self) -> PollResult:
        try:
            return await super().poll()
        except asyncio.CancelledError:
            return ok(self.device_id)(1)[1]


def test_stop_ends_a_device_task_whose_poll_swallowed_the_cancellation():
    pollers = {"a": CancelSwallowingPoller("a", ok("a", duration=0.5))}
    collector = Collector(make_site(device("a", interval=1.0)), lambda batch: None,
                          poller_factory=lambda dev, profile, cred: pollers[dev.id], rng=random.Random(1))

    async def main() -> int:
        await collector.start()
        while not pollers["a"].running:  # stop while a poll is under way
            await asyncio.sleep(0.05)
        await collector.stop()  # before the fix this never returned (pytest-timeout ends the test)
        polls = len(pollers["a"].starts)
        await asyncio.sleep(5)  # the task ended: no poll after stop()
        return len(pollers["a"].starts) - polls

    assert run_virtual(main) == 0 and pollers["a"].closed


def test_run_returns_after_stop():
    harness = Harness({"a": ok("a")}, [device("a")])

    async def main() -> None:
        runner = asyncio.create_task(harness.collector.run())
        await asyncio.sleep(3)
        await harness.collector.stop()
        await asyncio.wait_for(runner, 1)

    run_virtual(main)
    assert len(harness.pollers["a"].starts) >= 2


def test_make_poller_builds_the_real_poller_for_each_protocol():
    from collectors.modbus import ModbusPoller
    from collectors.snmp import SnmpPoller
    from config.load import ResolvedCommunity
    from config.secret import Secret

    site = Site(make_site().config.model_copy(update={"devices": [device("u", protocol="snmp"), device("t")]}),
                PROFILES, {"public": ResolvedCommunity(Secret("public-canary"))}, Path("/nonexistent/site.yaml"))

    async def main() -> tuple[object, object]:
        snmp = make_poller(site, site.device("u").model_copy(update={"credential": "public"}))
        modbus = make_poller(site, site.device("t"))
        await snmp.close()
        await modbus.close()
        return snmp, modbus

    snmp, modbus = asyncio.run(main())
    assert isinstance(snmp, SnmpPoller) and isinstance(modbus, ModbusPoller)


def test_own_timeout_error_of_a_poller_is_not_blamed_on_the_budget():
    def script(n: int) -> tuple[float, PollResult]:
        raise TimeoutError("connect timed out")

    harness = Harness({"a": script}, [device("a", interval=1.0)])
    harness.run(1.5)
    assert harness.collector.status()["a"].last_error == "poller error: TimeoutError: connect timed out"


def test_start_refuses_and_closes_built_pollers_when_a_device_cannot_be_polled():
    built: list[FakePoller] = []

    def factory(dev, profile, cred):
        if dev.id == "bad":
            raise ValueError("bad: spans 2 registers but a read may fetch only 1")
        built.append(FakePoller(dev.id, ok(dev.id)))
        return built[-1]

    collector = Collector(make_site(device("good"), device("bad")), lambda batch: None, poller_factory=factory)

    async def main() -> None:
        with pytest.raises(ValueError, match="spans 2 registers"):
            await collector.start()

    run_virtual(main)
    assert [p.closed for p in built] == [True]
