"""Envelope compliance is the same on every store: SqliteStore and InfluxStore hold the same readings.

The hand-computed series of tests/data/evidence_compliance.yaml (inside and outside the envelopes, gaps, a
MISSING and an INVALID sample, a drill sample) is written to a SqliteStore and, through the spool and
influxdb-client, to the real influxd 1.6.7 of conftest.py; ``envelope_compliance`` must give identical rows
from either, and the same figures as the fixture. The alerts it joins are always in the SQLite file.
Small ``sample_page`` values make the InfluxDB reads cross many page boundaries.
"""

from __future__ import annotations

import argparse
import calendar
import json
import math
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from alerts.model import Alert, AlertState
from alerts.state import AlertStateStore
from collectors.model import Quality, Reading, Severity
from config.load import Site, load_site
from evidence import cli as evidence_cli
from evidence.compliance import envelope_compliance
from storage.base import Sample
from storage.influx import InfluxStore, device_tags
from storage.sqlite import SqliteStore
from tests.conftest import ROOT
from tests.contract.conftest import connection

pytestmark = pytest.mark.integration

SITE = ROOT / "tests" / "data" / "sites" / "evidence_rooms.yaml"
FIXTURE = ROOT / "tests" / "data" / "evidence_compliance.yaml"
SENSOR, TEMP, HUMIDITY = "dh1-inlet-1", "ambient.temperature", "ambient.humidity"
RULE = "inlet_temperature_out_of_envelope"
QUALITY = {"good": Quality.GOOD, "missing": Quality.MISSING, "invalid": Quality.INVALID}
NOTHING_LISTENS = 31499  # a port of this helper's range that no test opens: InfluxDB down
FIGURES = ("inside_s", "outside_s", "gap_s", "inside_pct", "outside_pct", "gap_pct", "gap_count", "longest_gap_s")


@pytest.fixture(scope="module")
def site() -> Site:
    return load_site(SITE)


@pytest.fixture(scope="module")
def fixture() -> dict:
    return YAML(typ="safe").load(FIXTURE)


@pytest.fixture(scope="module")
def t0(fixture) -> float:
    date, clock = fixture["t0"].rstrip("Z").split("T")
    return float(calendar.timegm((*map(int, date.split("-")), *map(int, clock.split(":")))))


@pytest.fixture
def stores(tmp_path, site, shim, influx_database) -> Iterator[tuple[SqliteStore, InfluxStore]]:
    """A SqliteStore (also the alerts' file and the InfluxStore's event store) and an InfluxStore of one site."""
    sqlite = SqliteStore(tmp_path / "facwatch.db")
    influx = InfluxStore(connection(f"http://127.0.0.1:{shim.port}", influx_database, tmp_path / "spool.db"),
                         device_tags(site.config), site=site.config.site.id, event_store=sqlite)
    yield sqlite, influx
    influx.close()
    sqlite.close()


def write_both(stores: tuple[SqliteStore, InfluxStore], readings: list[Reading]) -> None:
    sqlite, influx = stores
    sqlite.write(readings)
    influx.write(readings)
    assert influx.flush(timeout=30), influx.spool_stats()


def fixture_readings(fixture: dict, t0: float) -> list[Reading]:
    return [Reading(SENSOR, TEMP, t0 + offset, value, QUALITY[q], scenario=scenario)
            for offset, value, q, scenario in fixture["samples"]]


def seed_alert(db: Path, t0: float) -> None:
    """The fixture's real alert over the November excursion, acknowledged with a note."""
    labels = {"site": "evidence", "device": SENSOR, "room": "dh1", "device_class": "thsensor", "point": TEMP}
    alerts = AlertStateStore(db)
    previous = AlertState.INACTIVE
    for state, at in (("pending", 2100), ("firing", 2160), ("resolved", 2700)):
        alert = Alert(RULE, labels, Severity.CRITICAL, AlertState(state), active_since=t0 + 2100, updated_at=t0 + at)
        alerts.save(alert, previous)
        previous = alert.state
    alerts.acknowledge(alert.fingerprint, "alice", "CRAC 2 restarted", t0 + 2200)
    alerts.close()


def test_compliance_rows_are_identical_on_both_stores_and_equal_the_hand_computed_figures(
        stores, site, fixture, t0):
    sqlite, influx = stores
    write_both(stores, fixture_readings(fixture, t0))
    seed_alert(sqlite.path, t0)
    influx.sample_page = 3  # every month's read crosses several pages
    start, end = (t0 + offset for offset in fixture["period"])

    on_sqlite = envelope_compliance(sqlite.path, site, start, end, readings=sqlite)
    on_influx = envelope_compliance(sqlite.path, site, start, end, readings=influx)

    assert on_influx == on_sqlite
    for row in on_influx:
        expected = fixture["expected"][row["month"]][row["level"]] if row["point"] == TEMP else None
        if expected is None:  # humidity was never stored: all gap, never compliant
            assert (row["inside_s"], row["gap_pct"]) == (0, 100.0)
            continue
        assert {key: row[key] for key in FIGURES} == {key: expected[key] for key in FIGURES}
    acked = [e["alert"] for r in on_influx for e in r["excursions"] if e["alert"]]
    assert acked and {(a["acknowledged_by"], a["ack_note"]) for a in acked} == {("alice", "CRAC 2 restarted")}


def test_raw_samples_are_identical_on_both_stores(stores, t0):
    write_both(stores, [Reading(SENSOR, TEMP, t0 - 30, 20.0), Reading(SENSOR, TEMP, t0, 21.5),
                        Reading(SENSOR, TEMP, t0 + 10, None, Quality.MISSING),
                        Reading(SENSOR, TEMP, t0 + 20, 99.0, Quality.INVALID),  # a value it must never show
                        Reading(SENSOR, TEMP, t0 + 30, math.nan),  # a "GOOD" NaN is a missing value
                        Reading(SENSOR, TEMP, t0 + 40, 14.0, scenario="drill"),
                        Reading(SENSOR, TEMP, t0 + 50, 22.25), Reading(SENSOR, TEMP, t0 + 60, 23.0),
                        Reading(SENSOR, HUMIDITY, t0 + 5, 45.0)])
    expected = [Sample(t0, 21.5, Quality.GOOD), Sample(t0 + 10, None, Quality.MISSING),
                Sample(t0 + 20, None, Quality.INVALID), Sample(t0 + 30, None, Quality.MISSING),
                Sample(t0 + 50, 22.25, Quality.GOOD)]
    for store in stores:
        assert list(store.samples(SENSOR, TEMP, t0, t0 + 60)) == expected, type(store).__name__
        assert store.sample_before(SENSOR, TEMP, t0, 60) == Sample(t0 - 30, 20.0, Quality.GOOD)
        assert store.sample_before(SENSOR, TEMP, t0, 29) is None  # outside the look-back
        assert store.sample_before(SENSOR, TEMP, t0 + 50, 25) == Sample(t0 + 30, None, Quality.MISSING)  # no drill
        assert list(store.samples(SENSOR, TEMP, t0 + 61, t0 + 600)) == []
        assert list(store.samples("no-such-device", TEMP, t0, t0 + 60)) == []


def test_a_long_series_streams_in_pages_with_the_same_figures(stores, site, t0):
    """Six hours of 2-s samples (10,800) across envelopes, with MISSING samples and an outage, in 700-row pages."""
    sqlite, influx = stores
    readings = []
    for i in range(10_800):
        ts = t0 + 2 * i
        if 4_000 <= i < 4_300:  # a 10-minute outage: nothing stored
            continue
        if i % 97 == 0:
            readings.append(Reading(SENSOR, TEMP, ts, None, Quality.MISSING))
        else:
            readings.append(Reading(SENSOR, TEMP, ts, 21.0 + 12.0 * math.sin(i / 300)))
    write_both(stores, readings)
    influx.sample_page = 700
    rows = {name: envelope_compliance(sqlite.path, site, t0 - 600, t0 + 22_200, readings=store, stale_after=0.05)
            for name, store in (("sqlite", sqlite), ("influx", influx))}
    assert rows["influx"] == rows["sqlite"]
    assert len(list(influx.samples(SENSOR, TEMP, t0, t0 + 21_600))) == len(readings)
    warning = [r for r in rows["influx"] if r["point"] == TEMP and r["level"] == "warning"]
    assert sum(r["inside_s"] for r in warning) > 0 and sum(r["outside_s"] for r in warning) > 0
    assert sum(r["gap_count"] for r in warning) > 100  # every MISSING sample is a gap, and so is the outage


def influx_site(tmp_path: Path, url: str, database: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The compliance site with ``storage.influx`` (its SQLite file in data/), and no signing key in the env."""
    config = tmp_path / "site.yaml"
    document = YAML(typ="safe").load(SITE)
    document["storage"] = {"path": "data/facwatch.db", "influx": {
        "url": url, "token": {"env": "FACWATCH_TEST_INFLUX_TOKEN"}, "database": database, "timeout_s": 5,
        "retry_time_s": 1, "spool": {"path": "data/spool.db"}}}
    YAML(typ="safe").dump(document, config)
    (tmp_path / "data").mkdir()
    monkeypatch.setenv("FACWATCH_TEST_INFLUX_TOKEN", "test-token")
    monkeypatch.delenv("FACWATCH_AUDIT_KEY", raising=False)
    monkeypatch.delenv("FACWATCH_AUDIT_KEY_FILE", raising=False)
    return config


def export(config: Path, out: Path) -> int:
    parser = argparse.ArgumentParser(prog="facwatch")
    evidence_cli.add_parser(parser.add_subparsers(required=True))
    args = parser.parse_args(["evidence", "export", "-c", str(config), "--from", "2026-10-31T23:30:00Z",
                              "--to", "2026-11-01T00:30:00Z", "-o", str(out), "--actor", "k.exporter"])
    return args.handler(args)


def test_cli_export_of_an_influxdb_site_has_the_compliance_of_its_readings(
        tmp_path, shim, influx_database, fixture, t0, monkeypatch, capsys):
    config = influx_site(tmp_path, f"http://127.0.0.1:{shim.port}", influx_database, monkeypatch)
    site = load_site(config)
    events = SqliteStore(site.storage_path())
    assert site.influx is not None
    writer = InfluxStore(site.influx, device_tags(site.config), site=site.config.site.id, event_store=events)
    writer.write(fixture_readings(fixture, t0))
    assert writer.flush(timeout=30), writer.spool_stats()
    writer.close()
    events.close()
    seed_alert(site.storage_path(), t0)

    out = tmp_path / "pack.zip"
    assert export(config, out) == 0, capsys.readouterr().err

    with zipfile.ZipFile(out) as pack:
        rows = json.loads(pack.read("records/envelope_compliance.json"))
    got = {(r["month"], r["level"]): r for r in rows if r["point"] == TEMP}
    for (month, level), row in got.items():
        assert {k: row[k] for k in FIGURES} == {k: fixture["expected"][month][level][k] for k in FIGURES}
    assert len(got) == 4


def test_cli_export_with_influxdb_down_fails_and_writes_nothing(tmp_path, monkeypatch, capsys):
    config = influx_site(tmp_path, f"http://127.0.0.1:{NOTHING_LISTENS}", "facwatch", monkeypatch)
    SqliteStore(load_site(config).storage_path()).close()
    out = tmp_path / "pack.zip"
    assert export(config, out) == 1
    assert "evidence export failed, nothing written" in capsys.readouterr().err and not out.exists()
