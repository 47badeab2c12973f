"""SNMP traps end to end on loopback: net-snmp snmptrap and the simulator's agents → TrapReceiver → Events.

Ports 27000–27099 (this module's range): the receiver listens on 27010, simulated agents on 27011/27012.
net-snmp runs as an asyncio subprocess because the receiver lives in the test's own event loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from collectors.model import Event, Quality, Reading, Severity
from collectors.traps import TrapReceiver
from config.load import Site, load_site
from simulators.snmp_agent import SnmpAgent
from simulators.traps import UpsTrapEmitter
from storage.sqlite import SqliteStore
from tests.peers import require

pytestmark = pytest.mark.integration

HOST = "127.0.0.1"
UNKNOWN_HOST = "127.0.0.2"  # also loopback on Linux, but no device of the site lives there
LISTEN_PORT = 27010
UPS_A_PORT = 27011  # RFC 1628 UPS, agent speaks SNMPv3
UPS_B_PORT = 27012  # APC UPS, agent speaks v2c
# canaries: none of these may ever show up in a log line or an event
COMMUNITY = "canary-community-27010"
AUTH_KEY = "canary-auth-key-27010"
PRIV_KEY = "canary-priv-key-27010"
USER, USER_256 = "fw-trapper", "fw-trapper-256"
SECRETS = (COMMUNITY, AUTH_KEY, PRIV_KEY)
ON_BATTERY = "1.3.6.1.2.1.33.2.1"
MINUTES_REMAINING = "1.3.6.1.2.1.33.1.2.3.0"
SENDER_ENGINE_ID = "0x8000000001020304"


def write_site(tmp_path: Path) -> Path:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for name, value in {"community": COMMUNITY, "auth": AUTH_KEY, "priv": PRIV_KEY}.items():
        (secrets / name).write_text(value + "\n")
    path = tmp_path / "site.yaml"
    path.write_text(f"""
site: {{id: traptest, name: trap test}}
rooms: [{{id: r1, name: Room 1}}]
credentials:
  trap-community: {{type: snmp_community, community: {{file: {secrets / 'community'}}}, insecure: true}}
  trap-v3:
    {{type: snmp_v3, user: {USER}, auth_protocol: sha256, auth_key: {{file: {secrets / 'auth'}}},
     priv_protocol: aes128, priv_key: {{file: {secrets / 'priv'}}}}}
  trap-v3-256:
    {{type: snmp_v3, user: {USER_256}, auth_protocol: sha512, auth_key: {{file: {secrets / 'auth'}}},
     priv_protocol: aes256, priv_key: {{file: {secrets / 'priv'}}}}}
devices:
  - {{id: ups-a, class: ups, profile: ups/ietf_rfc1628, room: r1, host: {HOST}, port: {UPS_A_PORT},
     credential: trap-v3}}
  - {{id: ups-b, class: ups, profile: ups/apc_powernet, room: r1, host: {HOST}, port: {UPS_B_PORT},
     credential: trap-community, snmp: {{version: 2c}}}}
traps:
  listen: {HOST}:{LISTEN_PORT}
  credentials: [trap-community, trap-v3, trap-v3-256]
""")
    return path


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return load_site(write_site(tmp_path))


class Sink:
    """Collects what the receiver hands out, with the monotonic time each event arrived."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.readings: list[Reading] = []
        self.arrived: list[float] = []

    def on_events(self, events: list[Event]) -> None:
        self.events += events
        self.arrived += [time.monotonic()] * len(events)

    def on_readings(self, readings: list[Reading]) -> None:
        self.readings += readings

    async def wait_events(self, count: int, timeout: float = 2.0) -> list[Event]:
        await wait_until(lambda: len(self.events) >= count, timeout)
        return self.events


async def wait_until(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.005)


@pytest.fixture
async def receiver(site: Site) -> AsyncIterator[tuple[TrapReceiver, Sink]]:
    sink = Sink()
    async with TrapReceiver(site, sink.on_readings, sink.on_events) as running:
        yield running, sink


async def snmptrap(tmp_path: Path, *args: str) -> None:
    """Run net-snmp's snmptrap without MIBs, with its persistent files (engine id) in tmp_path."""
    binary = require("snmptrap")
    env = {**os.environ, "MIBS": "", "SNMP_PERSISTENT_DIR": str(tmp_path), "SNMPCONFPATH": str(tmp_path)}
    process = await asyncio.create_subprocess_exec(binary, *args, env=env, stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.STDOUT)
    output, _ = await process.communicate()
    assert process.returncode == 0, output.decode(errors="replace")


def v3_args(user: str = USER, auth: str = "SHA-256", auth_key: str = AUTH_KEY, priv: str = "AES") -> list[str]:
    return ["-v3", "-u", user, "-l", "authPriv", "-a", auth, "-A", auth_key, "-x", priv, "-X", PRIV_KEY]


# --- (1) net-snmp v2c → Event within 1 s, matched by host, Reading decoded -------------------------------

async def test_net_snmp_v2c_trap_becomes_an_event_and_a_reading_within_a_second(receiver, tmp_path):
    _, sink = receiver
    started = time.monotonic()
    await snmptrap(tmp_path, "-v2c", "-c", COMMUNITY, f"{HOST}:{LISTEN_PORT}", "", ON_BATTERY,
                   MINUTES_REMAINING, "i", "12", "1.3.6.1.2.1.33.1.2.2.0", "i", "45")
    (event,) = await sink.wait_events(1, timeout=1.0)
    latency = sink.arrived[0] - started
    print(f"\nsnmptrap -v2c → Event latency: {latency * 1000:.1f} ms (includes starting snmptrap)")
    assert latency < 1.0
    assert (event.device, event.kind, event.name, event.severity) == ("ups-a", "trap", "upsTrapOnBattery",
                                                                       Severity.WARNING)
    payload = event.payload
    assert payload["oid"] == ON_BATTERY and payload["version"] == "v2c"
    # two UPSs share 127.0.0.1: the APC one does not know this trap, so the host alone decides
    assert payload["matched_by"] == "host" and payload["source"].startswith(f"{HOST}:")
    assert payload["community_or_user"] == "trap-community"
    assert payload["varbinds"][1:] == [["1.3.6.1.6.3.1.1.4.1.0", "object_identifier", ON_BATTERY],
                                       [MINUTES_REMAINING, "integer", 12], ["1.3.6.1.2.1.33.1.2.2.0", "integer", 45]]
    assert payload["varbinds"][0][:2] == ["1.3.6.1.2.1.1.3.0", "timeticks"]
    json.dumps(payload)  # storable as it is
    by_point = {r.point: r for r in sink.readings}
    assert by_point["battery.runtime"].value == 12.0 and by_point["battery.runtime"].quality is Quality.GOOD
    assert by_point["battery.time_on_battery"].value == 45.0
    assert by_point["battery.runtime"].ts == event.ts and by_point["battery.runtime"].device == "ups-a"


# --- (2) unknown sender and unknown OID are kept -------------------------------------------------------------

async def test_unknown_oid_from_unknown_host_is_kept_without_a_device(receiver, tmp_path):
    _, sink = receiver
    await snmptrap(tmp_path, f"--clientaddr={UNKNOWN_HOST}", "-v2c", "-c", COMMUNITY, f"{HOST}:{LISTEN_PORT}", "",
                   "1.3.6.1.4.1.99999.0.42", "1.3.6.1.4.1.99999.1.1.0", "s", "hello", MINUTES_REMAINING, "i", "3")
    (event,) = await sink.wait_events(1)
    assert event.device is None and event.name == "1.3.6.1.4.1.99999.0.42" and event.severity is Severity.UNKNOWN
    assert event.payload["source"].startswith(f"{UNKNOWN_HOST}:") and event.payload["matched_by"] is None
    assert ["1.3.6.1.4.1.99999.1.1.0", "octet_string", "hello"] in event.payload["varbinds"]
    assert sink.readings == []  # no device, no profile to decode with


async def test_known_trap_from_unknown_host_is_named_by_any_profile(receiver, tmp_path):
    _, sink = receiver
    await snmptrap(tmp_path, f"--clientaddr={UNKNOWN_HOST}", "-v2c", "-c", COMMUNITY, f"{HOST}:{LISTEN_PORT}", "",
                   "1.3.6.1.4.1.318.0.7", "1.3.6.1.4.1.318.2.3.3.0", "s", "UPS: low battery")
    (event,) = await sink.wait_events(1)
    assert (event.device, event.name, event.severity) == (None, "lowBattery", Severity.CRITICAL)


async def test_snmpv1_apc_trap_is_named_and_its_community_varbind_redacted(receiver, tmp_path):
    _, sink = receiver
    await snmptrap(tmp_path, "-v1", "-c", COMMUNITY, f"{HOST}:{LISTEN_PORT}", "1.3.6.1.4.1.318", HOST, "6", "5", "",
                   "1.3.6.1.4.1.318.2.3.3.0", "s", "UPS: On battery power")
    (event,) = await sink.wait_events(1)
    assert (event.device, event.name, event.payload["version"]) == ("ups-b", "upsOnBattery", "v1")
    assert ["1.3.6.1.6.3.18.1.4.0", "octet_string", "<redacted>"] in event.payload["varbinds"]
    assert COMMUNITY not in json.dumps(event.payload)


# --- (3) garbage and wrong credentials are dropped, the next good trap still arrives -------------------------

async def test_garbage_and_wrong_community_are_dropped_and_counted(receiver, tmp_path):
    running, sink = receiver
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        # not BER; a SEQUENCE that pyasn1 chokes on (TypeError inside pysnmp); empty; truncated; random
        for datagram in (b"garbage\x30\x82", b"", b"\x30\x82\xff\xff", b"\x30\x03\x02\x01\x05", os.urandom(600)):
            sock.sendto(datagram, (HOST, LISTEN_PORT))
    await snmptrap(tmp_path, "-v2c", "-c", "not-the-community", f"{HOST}:{LISTEN_PORT}", "", ON_BATTERY)
    await snmptrap(tmp_path, *v3_args(auth_key="wrong-auth-key-1"), f"{HOST}:{LISTEN_PORT}", "", ON_BATTERY)
    await wait_until(lambda: running.stats.received >= 7)
    assert sink.events == [] and running.stats.accepted == 0
    assert running.stats.dropped.get("bad_community") == 1 and running.stats.dropped.get("auth_failed") == 1
    assert running.stats.dropped.get("malformed", 0) >= 3
    assert running.stats.learned_engines == 0  # the wrong key's engine id was not kept
    await snmptrap(tmp_path, "-v2c", "-c", COMMUNITY, f"{HOST}:{LISTEN_PORT}", "", ON_BATTERY,
                   MINUTES_REMAINING, "i", "9")
    (event,) = await sink.wait_events(1)
    assert event.name == "upsTrapOnBattery" and running.stats.accepted == 1
    assert running.stats.total_dropped == running.stats.received - 1


async def test_a_failing_sink_does_not_stop_the_receiver(site, tmp_path):
    calls: list[int] = []

    def broken(events: list[Event]) -> None:
        calls.append(len(events))
        raise RuntimeError("store is down")

    async with TrapReceiver(site, lambda readings: None, broken) as running:
        for _ in range(2):
            await snmptrap(tmp_path, "-v2c", "-c", COMMUNITY, f"{HOST}:{LISTEN_PORT}", "", ON_BATTERY)
        await wait_until(lambda: len(calls) == 2)
    assert running.stats.accepted == 2 and running.stats.sink_errors == 2


async def test_port_in_use_fails_start_with_the_address(site):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind((HOST, LISTEN_PORT))
        with pytest.raises(OSError, match=f"udp {HOST}:{LISTEN_PORT}"):
            await TrapReceiver(site, lambda r: None, lambda e: None).start()


# --- (4) the simulator's agents: matched to their device by source address ---------------------------------

async def test_simulated_rfc1628_agent_trap_is_matched_by_its_agent_port(site, receiver):
    running, sink = receiver
    device = site.device("ups-a")
    profile = site.profile(device)
    agent = SnmpAgent("ups-a", profile, HOST, UPS_A_PORT, {"trap-v3": site.credentials["trap-v3"]})
    await agent.start()
    try:
        agent.update({"battery.runtime": 7, "battery.time_on_battery": 30, "battery.runtime.low": 5})
        emitter = UpsTrapEmitter(profile)
        emitter.observe({"output.source": "normal", "battery.status": "batteryNormal"}, 0.0)
        pending = emitter.observe({"output.source": "battery", "battery.status": "batteryLow"}, 1.0)
        for name, extras in pending:
            assert await agent.send_trap(profile.trap(name), None, [(HOST, LISTEN_PORT)], extras) == 1
        events = await sink.wait_events(2)
    finally:
        await agent.stop()
    on_battery, alarm = events
    assert (on_battery.device, on_battery.name, on_battery.payload["source"]) == (
        "ups-a", "upsTrapOnBattery", f"{HOST}:{UPS_A_PORT}")
    assert on_battery.payload["matched_by"] == "address" and on_battery.payload["version"] == "v3"
    assert on_battery.payload["community_or_user"] == USER
    assert [row[0] for row in on_battery.payload["varbinds"]] == [
        "1.3.6.1.2.1.1.3.0", "1.3.6.1.6.3.1.1.4.1.0", MINUTES_REMAINING, "1.3.6.1.2.1.33.1.2.2.0",
        "1.3.6.1.2.1.33.1.9.7.0"]
    assert {r.point: r.value for r in sink.readings} == {
        "battery.runtime": 7.0, "battery.time_on_battery": 30.0, "battery.runtime.low": 5.0}
    assert alarm.name == "upsTrapAlarmEntryAdded"
    assert alarm.payload["varbinds"][2] == ["1.3.6.1.2.1.33.1.6.2.1.2.2", "object_identifier",
                                            "1.3.6.1.2.1.33.1.6.3.3"]
    assert running.stats.learned_engines == 1


async def test_simulated_apc_agent_sends_v2c_from_its_port(site, receiver):
    _, sink = receiver
    profile = site.profile(site.device("ups-b"))
    agent = SnmpAgent("ups-b", profile, HOST, UPS_B_PORT, {"trap-community": site.credentials["trap-community"]})
    await agent.start()
    try:
        emitter = UpsTrapEmitter(profile)
        emitter.observe({"output.status": "onLine"}, 0.0)
        ((name, extras),) = emitter.observe({"output.status": "onBattery"}, 1.0)
        await agent.send_trap(profile.trap("upsDiagnosticsPassed"), {}, [(HOST, LISTEN_PORT)])  # warm-up
        await sink.wait_events(1)
        started = time.monotonic()
        await agent.send_trap(profile.trap(name), {}, [(HOST, LISTEN_PORT)], extras)
        event = (await sink.wait_events(2))[1]
        latency = sink.arrived[1] - started
    finally:
        await agent.stop()
    print(f"\nagent send_trap (v2c) → Event latency: {latency * 1000:.2f} ms")
    assert latency < 1.0
    assert (event.device, event.name, event.severity) == ("ups-b", "upsOnBattery", Severity.WARNING)
    assert event.payload["matched_by"] == "address" and event.payload["version"] == "v2c"
    assert event.payload["varbinds"][2][:2] == ["1.3.6.1.4.1.318.2.3.3.0", "octet_string"]


async def test_unreachable_target_is_skipped_not_raised(site):
    profile = site.profile(site.device("ups-a"))
    agent = SnmpAgent("ups-a", profile, HOST, UPS_A_PORT, {"trap-v3": site.credentials["trap-v3"]})
    await agent.start()
    try:
        sent = await agent.send_trap(profile.trap("upsTrapOnBattery"), {}, [("::1", 162), (HOST, LISTEN_PORT)])
    finally:
        await agent.stop()
    assert sent == 1  # an IPv6 target cannot be reached from the agent's IPv4 socket


# --- (5) SNMPv3 authPriv ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("user", "auth", "priv", "engine_id"), [
    (USER, "SHA-256", "AES", SENDER_ENGINE_ID),  # snmptrap -e: the sender's engine id given explicitly
    (USER, "SHA-256", "AES", None),  # net-snmp's own (persistent) engine id
    (USER_256, "SHA-512", "AES-256", None),  # AES-256 with Blumenthal key extension, as net-snmp does it
])
async def test_net_snmp_v3_auth_priv_traps_are_received(receiver, tmp_path, user, auth, priv, engine_id):
    running, sink = receiver
    engine = ["-e", engine_id] if engine_id else []
    await snmptrap(tmp_path, *v3_args(user, auth, priv=priv), *engine, f"{HOST}:{LISTEN_PORT}", "", ON_BATTERY,
                   MINUTES_REMAINING, "i", "4")
    (event,) = await sink.wait_events(1)
    assert (event.device, event.name, event.payload["version"]) == ("ups-a", "upsTrapOnBattery", "v3")
    assert event.payload["community_or_user"] == user
    assert [r.value for r in sink.readings if r.point == "battery.runtime"] == [4.0]
    # a second trap from the same engine needs no new registration
    await snmptrap(tmp_path, *v3_args(user, auth, priv=priv), *engine, f"{HOST}:{LISTEN_PORT}", "", ON_BATTERY)
    await sink.wait_events(2)
    assert running.stats.learned_engines == 1


@pytest.mark.parametrize("level", [["-l", "authNoPriv", "-a", "SHA-256", "-A", AUTH_KEY], ["-l", "noAuthNoPriv"]])
async def test_v3_below_auth_priv_is_dropped(receiver, tmp_path, level):
    running, sink = receiver
    await snmptrap(tmp_path, "-v3", "-u", USER, *level, "-e", SENDER_ENGINE_ID, f"{HOST}:{LISTEN_PORT}", "",
                   ON_BATTERY)
    await wait_until(lambda: running.stats.received == 1)
    assert sink.events == [] and running.stats.dropped == {"not_auth_priv": 1}
    assert running.stats.learned_engines == 0


async def test_learned_sender_engines_are_capped(site, tmp_path):
    sink = Sink()
    async with TrapReceiver(site, sink.on_readings, sink.on_events, max_learned_engines=1) as running:
        for engine_id in (SENDER_ENGINE_ID, "0x8000000001020305", SENDER_ENGINE_ID):
            await snmptrap(tmp_path, *v3_args(), "-e", engine_id, f"{HOST}:{LISTEN_PORT}", "", ON_BATTERY)
        await wait_until(lambda: running.stats.received == 3)
    assert len(sink.events) == 2 and running.stats.dropped == {"too_many_engines": 1}
    assert running.stats.learned_engines == 1


async def test_net_snmp_v3_inform_is_answered(receiver, tmp_path):
    _, sink = receiver
    binary = require("snmpinform")
    env = {**os.environ, "MIBS": "", "SNMP_PERSISTENT_DIR": str(tmp_path), "SNMPCONFPATH": str(tmp_path)}
    process = await asyncio.create_subprocess_exec(
        binary, *v3_args(), "-r", "0", "-t", "2", f"{HOST}:{LISTEN_PORT}", "", "1.3.6.1.2.1.33.2.2",
        "1.3.6.1.2.1.33.1.7.3.0", "i", "1", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output, _ = await process.communicate()
    assert process.returncode == 0, output.decode(errors="replace")  # the inform was acknowledged
    (event,) = await sink.wait_events(1)
    assert event.name == "upsTrapTestCompleted"
    assert [(r.point, r.text) for r in sink.readings] == [("ups.test.result", "donePass")]


# --- (6) secrets never logged, never stored --------------------------------------------------------------------

async def test_community_and_keys_never_reach_logs_or_events(site, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)  # every logger, pysnmp's and asyncio's included
    store = SqliteStore(tmp_path / "facwatch.db")
    sink = Sink()

    def write(events: list[Event]) -> None:
        sink.on_events(events)
        store.write_events(events)

    try:
        async with TrapReceiver(site, sink.on_readings, write):
            await snmptrap(tmp_path, "-v2c", "-c", COMMUNITY, f"{HOST}:{LISTEN_PORT}", "", ON_BATTERY)
            await snmptrap(tmp_path, "-v1", "-c", COMMUNITY, f"{HOST}:{LISTEN_PORT}", "1.3.6.1.4.1.318", HOST,
                           "6", "9", "")
            await snmptrap(tmp_path, "-v2c", "-c", COMMUNITY + "x", f"{HOST}:{LISTEN_PORT}", "", ON_BATTERY)
            await snmptrap(tmp_path, *v3_args(), f"{HOST}:{LISTEN_PORT}", "", ON_BATTERY)
            await snmptrap(tmp_path, *v3_args(auth_key=AUTH_KEY + "x"), f"{HOST}:{LISTEN_PORT}", "", ON_BATTERY)
            profile = site.profile(site.device("ups-b"))
            agent = SnmpAgent("ups-b", profile, HOST, UPS_B_PORT,
                              {"trap-community": site.credentials["trap-community"]})
            await agent.start()
            await agent.send_trap(profile.trap("powerRestored"), {}, [(HOST, LISTEN_PORT), ("::1", 162)])
            await agent.stop()
            await sink.wait_events(4)
        stored = store.events(0, time.time() + 60)
    finally:
        store.close()
    assert len(stored) == 4 and {e.name for e in stored} == {"upsTrapOnBattery", "powerRestored"}
    dumped = caplog.text + json.dumps([dict(e.payload) for e in stored]) + repr(sink.events)
    assert caplog.records  # something was logged, so the check means something
    for secret in SECRETS:
        assert secret not in dumped
