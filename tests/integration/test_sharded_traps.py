"""Issue 8: on a site split over `facwatch collect --shard i/2`, one shard receives the traps of every device.

Real peers: net-snmp's snmptrap against two `facwatch collect` processes. Ports 127.0.0.1:31300–31399
(this module's range): the trap listener on 31310; the devices' ports (31311–31320) have nobody behind
them, so polls fail, which does not matter here. Each SNMP device lives on a loopback address of its own
(127.0.0.11, 127.0.0.21, ...) and snmptrap sends from it (--clientaddr), so the sender is told by host.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from alerts.rules import load_rules
from alerts.state import AlertStateStore
from collectors.sharding import Shard, plan_shards, shard_site
from config.load import Site, load_site
from storage.sqlite import SqliteStore
from tests.peers import PeerProcess, require

pytestmark = pytest.mark.integration

FACWATCH = [sys.executable, "-m", "facwatch.cli"]
LISTEN = "127.0.0.1:31310"
COMMUNITY = "sharded-traps-31310"
UPS_HOST = "127.0.0.11"
SENSOR_HOSTS = [f"127.0.0.{21 + i}" for i in range(6)]  # enough sensors that some hash to each shard
OUTPUT_SOURCE = "1.3.6.1.2.1.33.1.4.1.0"  # upsOutputSource (RFC 1628): 5 = battery
ON_BATTERY = "1.3.6.1.2.1.33.2.1"  # upsTrapOnBattery
SENSOR_TRAP = "1.3.6.1.4.1.5528.100.10.2.1"  # any OID: readings come from the varbinds that are points
ROOT = Path(__file__).resolve().parents[2]

SITE = """\
site: {{id: sharded-traps, name: Sharded trap site}}
rooms: [{{id: dh1, name: Data hall 1}}]
credentials:
  lab-public: {{type: snmp_community, community: {{file: community}}, insecure: true}}
devices:
  - {{id: ups-a, class: ups, profile: ups/ietf_rfc1628, room: dh1, host: {ups}, port: 31311,
     credential: lab-public, snmp: {{version: 2c, timeout_s: 0.5, retries: 0}}, poll_interval_s: 5}}
  - {{id: ups-b, class: ups, profile: ups/ietf_rfc1628, room: dh1, host: 127.0.0.12, port: 31312,
     credential: lab-public, snmp: {{version: 2c, timeout_s: 0.5, retries: 0}}, poll_interval_s: 5}}
  - {{id: ats-1, class: ats, profile: ats/facwatch_ats, room: dh1, host: 127.0.0.1, port: 31313, poll_interval_s: 5}}
{sensors}
storage: {{path: var/site.db, retention_days: 30}}
traps: {{listen: "{listen}", credentials: [lab-public]}}
"""
SENSOR = ("  - {{id: rack-{n}-inlet, class: thsensor, profile: thsensor/apc_netbotz, room: dh1, host: {host}, "
          "port: {port}, credential: lab-public, snmp: {{version: 2c, timeout_s: 0.5, retries: 0}}, "
          "poll_interval_s: 5}}")


@pytest.fixture
def site_file(tmp_path: Path) -> Path:
    sensors = "\n".join(SENSOR.format(n=n, host=host, port=31314 + n) for n, host in enumerate(SENSOR_HOSTS))
    (tmp_path / "community").write_text(COMMUNITY)
    path = tmp_path / "site.yaml"
    path.write_text(SITE.format(ups=UPS_HOST, sensors=sensors, listen=LISTEN))
    return path


@pytest.fixture
def shards(site_file: Path, tmp_path: Path) -> Iterator[dict[int, PeerProcess]]:
    procs = {i: PeerProcess([*FACWATCH, "collect", "-c", str(site_file), "--shard", f"{i}/2",
                             "--data-dir", str(tmp_path / "data")], tmp_path / f"shard-{i}.log",
                            env=os.environ | {"PYTHONPATH": str(ROOT)})
             for i in (1, 2)}
    try:
        yield procs
    finally:
        for proc in procs.values():
            proc.stop(timeout=20)


def wait_for(condition: Callable[[], object], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not after {timeout} s")
        time.sleep(0.2)


def snmptrap(tmp_path: Path, source: str, *args: str) -> None:
    """net-snmp's snmptrap, v2c, sent from ``source`` (a loopback address) to the site's listener."""
    env = {**os.environ, "MIBS": "", "SNMP_PERSISTENT_DIR": str(tmp_path), "SNMPCONFPATH": str(tmp_path)}
    out = subprocess.run([require("snmptrap"), f"--clientaddr={source}", "-v2c", "-c", COMMUNITY, LISTEN, "", *args],
                         env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr


def test_one_shard_receives_and_stores_every_devices_traps_but_alerts_only_on_its_own(
        site_file: Path, shards: dict[int, PeerProcess], tmp_path: Path) -> None:
    require("snmptrap")
    site = load_site(site_file)
    plan = plan_shards(site, 2, load_rules())
    listener, other = plan.trap_shard, 3 - plan.trap_shard
    assert plan.owners["ats-1"] == plan.owners["ups-a"] == plan.owners["ups-b"] == listener
    foreign = next(d for d in site.devices if d.device_class == "thsensor" and plan.owners[d.id] == other)

    wait_for(lambda: "trap receiver listening" in shards[listener].output(), "the trap shard listening")
    wait_for(lambda: f"received by shard {listener}/2" in shards[other].output(), "the other shard started")
    snmptrap(tmp_path, foreign.host, SENSOR_TRAP, _temperature_oid(site, foreign), "i", "405")  # 40.5 °C
    snmptrap(tmp_path, UPS_HOST, ON_BATTERY, OUTPUT_SOURCE, "i", "5")

    listener_db = tmp_path / "data" / f"shard-{listener}-of-2" / "facwatch.db"
    wait_for(lambda: _latest(listener_db, foreign.id, "ambient.temperature") == 40.5, "the foreign trap reading")
    wait_for(lambda: _alerts(listener_db, "ups-a", "ups_on_battery"), "ups_on_battery from the own UPS's trap")
    events = _trap_events(listener_db)
    assert {(e.device, e.payload["matched_by"]) for e in events} >= {(foreign.id, "host"), ("ups-a", "host")}
    # the listener stores the other shard's device but never alerts on it: that shard's polls do
    assert _alerts(listener_db, foreign.id) == []
    assert _trap_events(tmp_path / "data" / f"shard-{other}-of-2" / "facwatch.db") == []
    assert all(proc.process.poll() is None for proc in shards.values()), "both shards still run"
    assert f"shard {listener}/2: " in shards[listener].output() and "kept together for" in shards[listener].output()
    assert "receives the site's SNMP traps" in shards[listener].output()
    assert "Traceback" not in shards[listener].output() + shards[other].output()


def test_the_plan_matches_what_each_shard_polls(site_file: Path) -> None:
    site = load_site(site_file)
    plan = plan_shards(site, 2, load_rules())
    for index in (1, 2):
        assert [d.id for d in shard_site(site, Shard(index, 2), load_rules()).devices] == plan.devices(index)


def _temperature_oid(site: Site, device) -> str:
    (spec,) = [p for p in site.profile(device).points if p.name == "ambient.temperature"]
    return str(spec.oid)


def _latest(db: Path, device: str, point: str) -> float | None:
    if not db.exists():
        return None
    store = SqliteStore(db)
    try:
        found = [r.value for r in store.latest([device]) if r.point == point]
    finally:
        store.close()
    return found[0] if found else None


def _alerts(db: Path, device: str, rule: str | None = None) -> list[str]:
    if not db.exists():
        return []
    state = AlertStateStore(db)
    try:
        alerts = state.load().values()
    finally:
        state.close()
    return [a.rule for a in alerts if a.labels.get("device") == device and rule in (None, a.rule)]


def _trap_events(db: Path) -> list:
    if not db.exists():
        return []
    store = SqliteStore(db)
    try:
        return [e for e in store.events(0, time.time() + 60) if e.kind == "trap"]
    finally:
        store.close()
