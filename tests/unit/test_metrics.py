"""/metrics of a collector process: a real HTTP GET, parsed with prometheus_client's own parser."""

from __future__ import annotations

import sqlite3
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from alerts.outbox import Outbox
from collectors.model import POLL_DURATION_POINT, REACHABLE_POINT, Reading
from config.load import Site, load_site
from facwatch.metrics import CollectorMetrics, MetricsServer, start_metrics_server
from storage.spool import Spool

ROOT = Path(__file__).resolve().parents[2]
SKELETON = ROOT / "tests" / "data" / "sites" / "skeleton.yaml"
NOW = 1_800_000_000.0


@dataclass
class _Status:
    overruns: int


@pytest.fixture(scope="module")
def site() -> Site:
    return load_site(SKELETON)


def _poll(device: str, answered: bool, seconds: float, ts: float = NOW) -> list[Reading]:
    return [Reading(device, REACHABLE_POINT, ts, 1.0 if answered else 0.0),
            Reading(device, POLL_DURATION_POINT, ts, seconds), Reading(device, "ambient.temperature", ts, 21.5)]


def _scrape(server: MetricsServer) -> dict[str, dict[tuple, float]]:
    with urllib.request.urlopen(f"http://{server.address}/metrics", timeout=5) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


@pytest.fixture
def serve() -> Iterator:
    servers: list[MetricsServer] = []

    def start(metrics: CollectorMetrics) -> MetricsServer:
        servers.append(start_metrics_server(metrics, "127.0.0.1:0"))
        return servers[-1]
    yield start
    for server in servers:
        server.stop()


def test_polls_errors_and_latency_are_counted_from_the_readings(site: Site, serve) -> None:
    metrics = CollectorMetrics(site, shard="1/2", status=lambda: {"dh1-ups-a": _Status(3)})
    metrics.observe(_poll("dh1-ups-a", True, 0.12) + _poll("dh1-ups-a", False, 2.5)
                    + _poll("dh1-rack-a01-inlet", True, 0.03))

    got = _scrape(serve(metrics))

    ups = (("class", "ups"), ("device", "dh1-ups-a"))
    assert got["facwatch_polls_total"][ups] == 2
    assert got["facwatch_poll_errors_total"][ups] == 1
    assert got["facwatch_polls_total"][(("class", "thsensor"), ("device", "dh1-rack-a01-inlet"))] == 1
    assert got["facwatch_poll_duration_seconds_count"][(("class", "ups"),)] == 2
    assert got["facwatch_poll_duration_seconds_sum"][(("class", "ups"),)] == pytest.approx(2.62)
    assert got["facwatch_poll_duration_seconds_bucket"][(("class", "ups"), ("le", "0.2"))] == 1
    assert got["facwatch_readings_total"][()] == 9
    assert got["facwatch_missed_deadlines_total"][(("device", "dh1-ups-a"),)] == 3
    assert got["facwatch_collector_devices"][(("shard", "1/2"), ("site", "demo"))] == 3


def test_device_labels_are_bounded(site: Site, serve) -> None:
    metrics = CollectorMetrics(site, max_device_labels=1)
    for device in site.devices:
        metrics.observe(_poll(device.id, True, 0.05))

    polls = _scrape(serve(metrics))["facwatch_polls_total"]

    assert {dict(labels)["device"] for labels in polls} == {"dh1-ups-a", "other"}
    assert polls[(("class", "thsensor"), ("device", "other"))] == 2


def test_outbox_depth_and_age_come_from_the_spool(site: Site, tmp_path: Path, serve) -> None:
    spool = Spool(tmp_path / "spool.db", max_lines=10)
    spool.append([f"ups,device=dh1-ups-a v=1 {int((NOW - 90) * 1000)}", f"ups,device=dh1-ups-a v=2 {int(NOW * 1000)}"])
    try:
        metrics = CollectorMetrics(site, spool=spool.stats, spool_path=tmp_path / "spool.db", clock=lambda: NOW)
        got = _scrape(serve(metrics))
    finally:
        spool.close()

    assert got["facwatch_outbox_pending_lines"][()] == 2
    assert got["facwatch_outbox_limit_lines"][()] == 10
    assert got["facwatch_outbox_oldest_age_seconds"][()] == pytest.approx(90, abs=0.01)
    assert got["facwatch_outbox_level"][(("level", "ok"),)] == 1
    assert got["facwatch_outbox_dropped_lines_total"][()] == 0


def test_notifications_sent_failed_and_pending_come_from_the_outbox(site: Site, tmp_path: Path, serve) -> None:
    db = tmp_path / "facwatch.db"
    Outbox(db).close()  # creates the tables
    with sqlite3.connect(db) as conn:
        conn.executemany(
            "INSERT INTO notify_outbox (receiver, group_key, batch, state, created_at, attempts, next_attempt_at) "
            "VALUES (?, 'g', '{}', ?, ?, ?, 0)",
            [("noc_pager", "delivered", NOW - 50, 1), ("noc_pager", "delivered", NOW - 40, 3),
             ("noc_pager", "dead", NOW - 30, 1), ("noc_pager", "pending", NOW - 20, 2),
             ("mail", "pending", NOW - 5, 0)])
    metrics = CollectorMetrics(site, notify_db=db, clock=lambda: NOW)

    got = _scrape(serve(metrics))

    pager, mail = (("receiver", "noc_pager"),), (("receiver", "mail"),)
    assert got["facwatch_notifications_sent_total"][pager] == 2
    assert got["facwatch_notifications_failed_total"][pager] == 1
    assert got["facwatch_notification_attempts_failed_total"][pager] == 2 + 1 + 2
    assert got["facwatch_notifications_pending"][pager] == 1
    assert got["facwatch_notifications_pending"][mail] == 1
    assert got["facwatch_notifications_oldest_pending_age_seconds"][pager] == pytest.approx(20)


def test_missing_sources_leave_the_scrape_working(site: Site, tmp_path: Path, serve) -> None:
    metrics = CollectorMetrics(site, notify_db=tmp_path / "absent.db", spool_path=tmp_path / "absent-spool.db")

    got = _scrape(serve(metrics))

    assert "facwatch_collector_devices" in got
    assert not (tmp_path / "absent.db").exists()  # a scrape never creates a database


def test_metrics_address_must_be_host_and_port(site: Site) -> None:
    with pytest.raises(ValueError, match="host:port"):
        start_metrics_server(CollectorMetrics(site), "9464")
