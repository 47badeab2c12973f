"""The Evidence page shows the records' notes, and judges compliance on the dashboard's own ReadStore."""

from __future__ import annotations

import calendar
from collections.abc import Iterator
from datetime import UTC, date
from pathlib import Path
from typing import Any

import pytest

from alerts.rules import load_rules
from collectors.model import Reading
from config.load import Site, load_site
from dashboard.data import DashboardSources, TickCache
from dashboard.evidence_views import Period, evidence_view
from dashboard.pages import PageContext
from dashboard.pages.evidence import EvidencePage, generator_table, ups_table
from evidence.records import EvidenceStore, GeneratorRun, UpsSelfTest
from storage.base import Sample
from storage.sqlite import SqliteStore
from tests.unit.dashboard.conftest import ROOT, FakeClock
from tests.unit.dashboard.test_evidence_page import texts

SITE = ROOT / "tests" / "data" / "sites" / "evidence_rooms.yaml"
SENSOR, TEMP = "dh1-inlet-1", "ambient.temperature"
START = float(calendar.timegm((2026, 10, 1, 0, 0, 0)))
OCTOBER = Period(date(2026, 10, 1), date(2026, 10, 31))
RESTARTED = "facwatch restarted at 2026-10-05 10:12:00 UTC during the run; figures cover what it saw"
MISSING = "—"


@pytest.fixture(scope="module")
def site() -> Site:
    return load_site(SITE)


@pytest.fixture
def db(tmp_path) -> Path:
    """Evidence records only: a run and a self-test with notes, one of each without."""
    path = tmp_path / "facwatch.db"
    records = EvidenceStore(path)
    base = START + 4 * 86_400
    records.add(GeneratorRun("gen-1", "test_on_load", base, base + 2000, run_s=2000, passed=True, notes=[RESTARTED]))
    records.add(GeneratorRun("gen-1", "test_on_load", base + 86_400, base + 88_400, run_s=2000, passed=True))
    records.add(UpsSelfTest("ups-a", base + 100, base + 112, "pass", "ok", duration_s=12.0, notes=[RESTARTED]))
    records.add(UpsSelfTest("ups-a", base + 200, base + 200, "pass", "ok", seen_running=False))
    records.add(UpsSelfTest("ups-a", base + 300, base + 312, "pass", "ok", duration_s=12.0))
    records.close()
    return path


def cells(table: Any) -> list[list[list[str]]]:
    """The texts of each cell of each body row."""
    body = table.children[1].children
    return [[texts(cell) for cell in row.children] for row in body]


def test_generator_runs_show_their_notes_and_a_dash_without(db, site):
    view = evidence_view(db, site, load_rules(), OCTOBER)
    assert [r.notes for r in view.generator_runs.rows] == [(RESTARTED,), ()]
    table = generator_table(view.generator_runs)
    assert texts(table.children[0])[-1] == "notes"
    assert [row[-1] for row in cells(table)] == [[RESTARTED], [MISSING]]


def test_ups_self_tests_show_their_notes_in_one_column(db, site):
    view = evidence_view(db, site, load_rules(), OCTOBER)
    table = ups_table(view.ups_tests)
    assert texts(table.children[0]).count("notes") == 1 and "note" not in texts(table.children[0])
    assert [row[-1] for row in cells(table)] == [
        [RESTARTED], ["shorter than a poll: only the result was seen"], [MISSING]]


class ReadingsElsewhere:
    """The dashboard's ReadStore on an InfluxDB site: the samples are not in the evidence file."""

    def __init__(self, evidence_file: Path, readings: SqliteStore):
        self.path = evidence_file  # store_file() finds the evidence (as it finds the alerts' file)
        self._readings = readings

    def samples(self, device: str, point: str, start: float, end: float) -> Iterator[Sample]:
        return self._readings.samples(device, point, start, end)

    def sample_before(self, device: str, point: str, start: float, look_back: float) -> Sample | None:
        return self._readings.sample_before(device, point, start, look_back)


def test_the_page_judges_compliance_on_the_dashboards_read_store(db, site, tmp_path):
    readings = SqliteStore(tmp_path / "elsewhere.db")
    poll = site.device(SENSOR).poll_interval_s
    readings.write([Reading(SENSOR, TEMP, START + i * poll, 21.0) for i in range(120)])  # two hours inside
    clock = FakeClock(START + 40 * 86_400)
    page = EvidencePage(PageContext(DashboardSources(site, ReadingsElsewhere(db, readings), clock=clock,
                                                     rules=tuple(load_rules())), UTC, TickCache(2, clock)))
    try:
        view = page.view(OCTOBER)
    finally:
        readings.close()
    assert view is not None and not view.compliance.error
    (row,) = [r for r in view.compliance.rows if r.point == TEMP]
    covered_s = 120 * poll + 2 * poll  # the last sample held for 3 polls
    warning = next(f for f in row.envelopes if f.level == "warning")
    assert warning.inside == f"{100 * covered_s / (31 * 86_400):.2f} %"


class InfluxDown(ReadingsElsewhere):
    """The dashboard's InfluxStore while InfluxDB does not answer."""

    def sample_before(self, device: str, point: str, start: float, look_back: float) -> Sample | None:
        from storage.influx import InfluxQueryError

        raise InfluxQueryError("InfluxDB at http://127.0.0.1:8086/query is unreachable")


def test_influxdb_down_empties_only_the_compliance_section(db, site, tmp_path):
    clock = FakeClock(START + 40 * 86_400)
    with SqliteStore(tmp_path / "elsewhere.db") as readings:
        page = EvidencePage(PageContext(DashboardSources(site, InfluxDown(db, readings), clock=clock,
                                                         rules=tuple(load_rules())), UTC, TickCache(2, clock)))
        view = page.view(OCTOBER)
    assert view is not None and "unreachable" in view.compliance.error
    assert len(view.generator_runs.rows) == 2 and not view.generator_runs.error
