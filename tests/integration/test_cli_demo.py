"""The CLI end to end: check, simulate --endpoints, and the whole demo in one process."""

from __future__ import annotations

import json
import sqlite3
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from tests.conftest import DEMO_CONFIG, ROOT
from tests.peers import PeerProcess, wait_for_tcp

pytestmark = pytest.mark.integration
FACWATCH = [sys.executable, "-m", "facwatch.cli"]
BASE_PORT = 24000


def demo_config_on_ports(tmp_path: Path, offset: int) -> Path:
    """The shipped demo config moved to free ports and a private store, secrets by absolute path."""
    yaml = YAML()
    doc = yaml.load(DEMO_CONFIG.read_text())
    for cred in doc["credentials"].values():
        for key in ("auth_key", "priv_key", "community"):
            if key in cred:
                cred[key]["file"] = str(DEMO_CONFIG.parent / cred[key]["file"])
    for device in doc["devices"]:
        device["port"] = moved(device["port"], offset)
    doc["traps"]["listen"] = f"127.0.0.1:{moved(16162, offset)}"
    doc["simulation"]["trap_targets"] = [doc["traps"]["listen"]]
    doc["simulation"]["control"] = f"127.0.0.1:{moved(16099, offset)}"
    doc["storage"]["path"] = str(tmp_path / "demo.db")
    doc["dashboard"]["port"] = BASE_PORT + offset + 90  # no demo port ends in 090
    path = tmp_path / "demo.yaml"
    with path.open("w") as out:
        yaml.dump(doc, out)
    return path


def moved(port: int, offset: int) -> int:
    """A demo port moved into this module's range (the demo's ports differ in their last three digits)."""
    return BASE_PORT + offset + port % 1000


def demo_device_ids() -> set[str]:
    return {d["id"] for d in YAML(typ="safe").load(DEMO_CONFIG.read_text())["devices"]}


def run_cli(*args: str) -> tuple[int, str, str]:
    import subprocess

    proc = subprocess.run([*FACWATCH, *args], capture_output=True, text=True, cwd=ROOT, timeout=60)
    return proc.returncode, proc.stdout, proc.stderr


def test_check_accepts_the_demo_config():
    code, out, _ = run_cli("check", "-c", str(DEMO_CONFIG))
    assert code == 0
    assert "OK" in out and f"{len(demo_device_ids())} devices" in out


def test_check_lists_every_problem_with_file_line_and_path(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("site: {id: x, name: X}\nrooms: [{id: r, name: R}]\n"
                   "devices:\n  - {id: a, class: ups, profile: ups/nope, room: r, host: h, port: 0, colour: red}\n")
    code, _, err = run_cli("check", "-c", str(bad))
    assert code == 2
    assert f"{bad}:4: devices[0].port" in err
    assert f"{bad}:4: devices[0].colour: unknown key" in err


def test_simulate_prints_a_table_and_writes_endpoints_json(tmp_path):
    config = demo_config_on_ports(tmp_path, 100)
    endpoints = tmp_path / "endpoints.json"
    proc = PeerProcess([*FACWATCH, "simulate", "-c", str(config), "--endpoints", str(endpoints)],
                       tmp_path / "simulate.log")
    try:
        deadline = time.monotonic() + 30
        while not endpoints.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        data = json.loads(endpoints.read_text())
    finally:
        proc.stop()
    assert {e["device"] for e in data} == demo_device_ids()
    ups = next(e for e in data if e["device"] == "ups-a")
    assert (ups["protocol"], ups["host"], ups["port"]) == ("snmp", "127.0.0.1", BASE_PORT + 100 + 161)
    assert "secret" not in endpoints.read_text() and "demo-auth-key" not in endpoints.read_text()
    assert "dh1-rack-a02-inlet" in proc.output() and "modbus" in proc.output()
    assert "auth-key" not in proc.output()


def test_demo_serves_live_values_from_every_device_within_30_s(tmp_path):
    config = demo_config_on_ports(tmp_path, 200)
    proc = PeerProcess([*FACWATCH, "demo", "-c", str(config)], tmp_path / "demo.log")
    try:
        wait_for_tcp(BASE_PORT + 290, timeout=30)
        devices = _devices_with_good_values(tmp_path / "demo.db", deadline=time.monotonic() + 30,
                                            wanted=demo_device_ids())
        page = urllib.request.urlopen(f"http://127.0.0.1:{BASE_PORT + 290}/", timeout=10).read().decode()
        first = _latest(tmp_path / "demo.db", "dh1-rack-a01-inlet", "ambient.temperature")
        later = _wait_for_change(tmp_path / "demo.db", first)
    finally:
        proc.stop()
    assert devices == demo_device_ids(), proc.output()
    assert "facwatch" in page
    assert later[0] > first[0]  # a newer sample arrived (values drift, so the number usually changes too)
    assert "Traceback" not in proc.output()


def _devices_with_good_values(db: Path, deadline: float, wanted: set[str]) -> set[str]:
    found: set[str] = set()
    while time.monotonic() < deadline and found != wanted:
        if db.exists():
            with sqlite3.connect(db) as conn:
                rows = conn.execute("SELECT DISTINCT s.device FROM latest l JOIN series s ON s.id = l.series_id "
                                    "WHERE l.quality = 0 AND l.value IS NOT NULL "
                                    "AND s.point NOT LIKE 'device.%'").fetchall()
            found = {r[0] for r in rows}
        time.sleep(0.5)
    return found


def _latest(db: Path, device: str, point: str) -> tuple[int, float]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT l.ts_ms, l.value FROM latest l JOIN series s ON s.id = l.series_id "
                            "WHERE s.device = ? AND s.point = ?", (device, point)).fetchone()


def _wait_for_change(db: Path, first: tuple[int, float]) -> tuple[int, float]:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        latest = _latest(db, "dh1-rack-a01-inlet", "ambient.temperature")
        if latest[0] > first[0]:
            return latest
        time.sleep(0.5)
    return first
