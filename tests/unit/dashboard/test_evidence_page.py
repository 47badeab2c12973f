"""The Evidence page's view-models and callbacks over a real SQLite file seeded through the evidence writers."""

from __future__ import annotations

import base64
import calendar
import json
import sqlite3
import zipfile
from datetime import UTC, date
from pathlib import Path
from typing import Any

import pytest

from alerts.model import Alert, AlertState
from alerts.rules import load_rules
from alerts.state import AlertStateStore
from collectors.model import Reading, Severity
from config.load import Site, load_site
from dashboard.access import Refused
from dashboard.data import DashboardSources, TickCache
from dashboard.evidence_views import (
    Period,
    audit_status,
    duration_text,
    evidence_view,
    export_request,
    month_of,
    month_options,
    month_period,
    period_from_dates,
    store_file,
)
from dashboard.pages import PageContext
from dashboard.pages import evidence as evidence_page
from dashboard.pages.evidence import EvidencePage, sections
from evidence.auditlog import AuditAction, AuditLog
from evidence.drill import record_drill
from evidence.records import EvidenceStore, GeneratorRun, PowerEvent, UpsSelfTest
from evidence.thresholds import RuleVersionStore
from evidence.verify import verify_pack
from storage.sqlite import SqliteStore
from tests.unit.dashboard.conftest import ROOT, FakeClock

SITE = ROOT / "tests" / "data" / "sites" / "evidence_rooms.yaml"
SENSOR, TEMP, RULE = "dh1-inlet-1", "ambient.temperature", "inlet_temperature_out_of_envelope"
XSS = "<img src=x onerror=alert(1)>"
START = float(calendar.timegm((2026, 10, 1, 0, 0, 0)))  # October 2026, UTC
OCTOBER = Period(date(2026, 10, 1), date(2026, 10, 31))
HOUR = 3600.0


def iso(epoch: float) -> str:
    from evidence.providers import iso as to_iso

    return str(to_iso(epoch))


def seed(db: Path, site: Site, base: float, *, sensor: str = SENSOR, note: str = XSS,
         acked_by: str = "j.smith") -> None:
    """Two hours of a sensor (20 min too warm, alerted and acknowledged), evidence records, a drill, audit."""
    poll = site.device(sensor).poll_interval_s
    excursion = (base + HOUR, base + HOUR + 1200)
    samples = []
    t = base
    while t < base + 2 * HOUR:
        warm = excursion[0] <= t < excursion[1]
        samples.append(Reading(sensor, TEMP, t, 28.0 if warm else 21.0))
        t += poll
    store = SqliteStore(db)
    store.write(samples)
    store.close()
    room = site.device(sensor).room
    labels = {"site": site.config.site.id, "device": sensor, "room": room, "device_class": "thsensor", "point": TEMP}
    alerts = AlertStateStore(db)
    previous = None
    for state, at in ((AlertState.PENDING, excursion[0]), (AlertState.FIRING, excursion[0] + 300),
                      (AlertState.RESOLVED, excursion[1] + 300)):
        alert = Alert(RULE, labels, Severity.WARNING, state, value=28.0, active_since=excursion[0], updated_at=at)
        alerts.save(alert, previous)
        previous = state
    alerts.acknowledge(alert.fingerprint, acked_by, note, excursion[0] + 360)  # acked while it fired
    alerts.close()

    records = EvidenceStore(db)
    records.add(GeneratorRun("gen-1", "test_on_load", base + 600, base + 3360, start_s=8.0, load_pct_mean=58.9,
                             time_at_min_load_s=2400, longest_at_min_load_s=2400, run_s=2760, passed=True,
                             criteria={"min_load_pct": 30.0, "min_duration_s": 1800}))
    records.add(GeneratorRun("gen-1", "test_off_load", base + 4000, base + 4900, start_s=9.0, run_s=900,
                             passed=False, reasons=["run off load: the monthly test needs the generator on load"],
                             criteria={"min_load_pct": 30.0}))
    records.add(UpsSelfTest("ups-a", base + 1800, base + 1812, "pass", "ok", duration_s=12.0, voltage_dip_v=1.5,
                            runtime_min_min=41.0, charge_min_pct=97.0))
    records.add(PowerEvent(base + 5000, base + 5300, duration_s=300, mains_out_s=240, on_battery_s=14,
                           lowest_runtime_min=40.0, generator="gen-1", time_to_generator_s=11.2, transfer_s=0.1,
                           notes=["mains restored after 4 min"]))
    records.add(GeneratorRun("gen-1", "test_on_load", base + 6000, base + 6300, run_s=300, passed=False,
                             reasons=["too short"], scenario="generator_short_test"))
    records.close()
    record_drill(db, {"scenario": "mains_failure", "started_at": iso(base + 6500), "ended_at": iso(base + 6800),
                      "result": "fail", "time_scale": 10.0, "data_dir": "/var/lib/facwatch/drills/x",
                      "expected": [{"alert": "ups_on_battery", "result": "pass"},
                                   {"alert": "generator_running", "result": "fail", "why": "the alert never fired"}]})
    clock = iter(base + 10 + i for i in range(1000))
    with AuditLog.open(db, clock=lambda: next(clock)) as log:
        RuleVersionStore(db, clock=lambda: base + 5).record(load_rules(), log, "a.jones", "CHG-1042 envelopes")
        log.append(AuditAction.ACKNOWLEDGEMENT, acked_by, f"{RULE} {sensor}", details={"note": note})
        log.checkpoint()


@pytest.fixture(scope="module")
def site() -> Site:
    return load_site(SITE)


@pytest.fixture
def db(tmp_path, site) -> Path:
    path = tmp_path / "facwatch.db"
    seed(path, site, START + 9 * 86_400)
    return path


@pytest.fixture
def page(db, site) -> EvidencePage:
    store = SqliteStore(db)
    clock = FakeClock(START + 40 * 86_400)
    ctx = PageContext(DashboardSources(site, store, clock=clock, rules=tuple(load_rules())), UTC,
                      TickCache(2, clock))
    yield EvidencePage(ctx)
    store.close()


def texts(component: Any) -> list[str]:
    """Every string child in a component tree (what React renders as text)."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, str):
            found.append(node)
        elif isinstance(node, list | tuple):
            for item in node:
                walk(item)
        elif hasattr(node, "children"):
            walk(node.children)

    walk(component)
    return found


# --- the period ------------------------------------------------------------------------------------

def test_the_default_period_is_the_utc_month_with_both_days_included():
    period = month_of(START + 20 * 86_400)
    assert (period.first_day, period.last_day) == (date(2026, 10, 1), date(2026, 10, 31))
    assert (period.start, period.end) == (START, float(calendar.timegm((2026, 11, 1, 0, 0, 0))))
    assert month_period("2026-10") == period
    assert month_period("<b>") is None
    assert month_options(START + 86_400, count=3) == [("October 2026", "2026-10"), ("September 2026", "2026-09"),
                                                      ("August 2026", "2026-08")]


def test_dates_out_of_order_or_missing_are_refused_with_a_message():
    assert period_from_dates("2026-10-05", "2026-10-05").end - period_from_dates("2026-10-05", "2026-10-05").start \
        == 86_400
    with pytest.raises(ValueError, match="before the from date"):
        period_from_dates("2026-10-05", "2026-10-04")
    with pytest.raises(ValueError, match="choose a from and a to date"):
        period_from_dates(None, "2026-10-04")


def test_durations_read_like_an_engineer_writes_them():
    assert [duration_text(s) for s in (8.04, 2760, 7500, 90_000, None)] == ["8.0 s", "46 min", "2 h 05 min",
                                                                            "1 d 1 h", "—"]


# --- sections --------------------------------------------------------------------------------------

def test_generator_runs_show_time_at_minimum_load_and_verdict_with_reasons(db, site):
    view = evidence_view(db, site, load_rules(), OCTOBER)
    passed, failed = view.generator_runs.rows
    assert (passed.kind, passed.at_load_label, passed.at_load, passed.load_mean, passed.result) == (
        "test on load", "at ≥ 30 % load", "40 min", "58.9 %", "pass")
    assert failed.result == "fail" and failed.reasons == ("run off load: the monthly test needs the generator on load",)
    kpis = {k.label: k.text for k in view.generator_runs.kpis}
    assert kpis == {"runs": "2", "test runs": "2", "passed": "1", "failed": "1", "in outages": "0"}


def test_ups_tests_and_power_events_carry_their_kpis(db, site):
    view = evidence_view(db, site, load_rules(), OCTOBER)
    (test,) = view.ups_tests.rows
    assert (test.device, test.result, test.duration, test.voltage_dip) == ("ups-a", "pass", "12.0 s", "1.5 V")
    (event,) = view.power_events.rows
    assert event.cause == "mains failure" and event.notes == ("mains restored after 4 min",)
    assert {k.label: k.text for k in event.kpis}["to ATS on generator"] == "11.2 s"
    summary = {k.label: k.text for k in view.power_events.kpis}
    assert summary["longest on battery"] == "14.0 s" and summary["load lost"] == "0"


def test_drills_are_listed_apart_and_never_in_the_real_figures(db, site):
    view = evidence_view(db, site, load_rules(), OCTOBER)
    assert all(r.scenario is None for r in view.generator_runs.rows)
    (drill,) = view.drills.rows
    assert (drill.scenario, drill.result, drill.time_scale, drill.expected) == ("mains_failure", "fail", "×10",
                                                                                "1 of 2 in budget")
    assert drill.failures == ("generator_running: the alert never fired",)
    (record,) = view.drill_records.rows
    assert (record.kind, record.scenario, record.summary) == ("generator run", "generator_short_test",
                                                              "test on load, fail")


def test_compliance_shows_share_inside_gap_and_the_acknowledged_excursion(db, site):
    view = evidence_view(db, site, load_rules(), OCTOBER)
    (row,) = [r for r in view.compliance.rows if r.point == TEMP]
    warning = next(f for f in row.envelopes if f.level == "warning")
    # 20 min outside the warning envelope; the rest of the 2 h inside, the last sample held for 3 polls
    # (120 s beyond the 2 h); the rest of October is a gap
    month_s, covered_s = 31 * 86_400, 7200 + 120
    assert warning.inside == f"{100 * (covered_s - 1200) / month_s:.2f} %" and warning.state == "warning"
    assert next(f for f in row.envelopes if f.level == "critical").state == "gap"  # never outside, data missing
    assert row.gap == f"{100 * (month_s - covered_s) / month_s:.2f} %"
    assert row.rule == RULE and len(row.rule_hash) == 16 and row.state == "warning"
    (excursion,) = row.excursions
    assert (excursion.level, excursion.duration, excursion.peak, excursion.alert) == ("warning", "20 min", "28.0",
                                                                                      "fired (warning)")
    assert (excursion.acknowledged_by, excursion.note) == ("j.smith", XSS)


def test_a_period_not_over_yet_counts_compliance_up_to_now_not_the_future_as_gap(db, site):
    now = START + 9 * 86_400 + 3 * HOUR  # an hour after the seeded two hours
    view = evidence_view(db, site, load_rules(), OCTOBER, now=now)
    (row,) = [r for r in view.compliance.rows if r.point == TEMP]
    elapsed, covered = now - START, 7200 + 120
    assert view.compliance_until == now
    assert row.gap == f"{100 * (elapsed - covered) / elapsed:.2f} %"
    (humidity,) = [r for r in view.compliance.rows if r.point != TEMP]
    assert humidity.state == "gap" and {f.state for f in humidity.envelopes} == {"gap"}  # never "ok" without data


def test_thresholds_in_force_name_who_changed_them_and_why(db, site):
    view = evidence_view(db, site, load_rules(), OCTOBER)
    row = next(r for r in view.thresholds.rows if r.rule == RULE)
    assert (row.changed_by, row.reason, row.valid_to) == ("a.jones", "CHG-1042 envelopes", "in force")


def test_a_section_that_cannot_be_read_says_so_and_the_others_still_show(tmp_path, site):
    db = tmp_path / "facwatch.db"
    sqlite3.connect(db).executescript("CREATE TABLE drill_run (id INTEGER);")  # a damaged table
    view = evidence_view(db, site, load_rules(), OCTOBER)
    assert "could not be read" in view.drills.error
    assert view.generator_runs.error == "" and view.generator_runs.rows == ()
    assert view.drill_records.error == "" and view.thresholds.rows == ()


def test_records_render_as_text_never_markup(db, site):
    tree = sections(evidence_view(db, site, load_rules(), OCTOBER))
    assert XSS in texts(tree)
    assert "dangerously_allow_html" not in json.dumps([c.to_plotly_json() for c in tree], default=str)


# --- the audit log ---------------------------------------------------------------------------------

def test_audit_status_is_ok_with_head_and_last_checkpoint(db):
    status = audit_status(db)
    assert status.state == "ok" and status.headline.startswith("OK")
    head = AuditLog.open(db).head()[0]
    assert status.head_seq == str(head) and f"(seq {head})" in status.last_checkpoint


def test_a_tampered_audit_log_shows_its_problems(db):
    conn = sqlite3.connect(db)
    conn.executescript("DROP TRIGGER audit_log_no_update; UPDATE audit_log SET subject = 'nothing' WHERE seq = 2;")
    conn.close()
    status = audit_status(db)
    assert status.state == "problems" and status.headline.startswith("PROBLEMS")
    assert any("seq 2" in p and "modified" in p for p in status.problems)


# --- callbacks -------------------------------------------------------------------------------------

def test_the_month_sets_the_dates_and_the_body_names_the_period(page):
    assert page.pick_month("2026-10") == ("2026-10-01", "2026-10-31")
    body, label = page.body("2026-10-01", "2026-10-31")
    assert label == "Period 2026-10-01 – 2026-10-31 (UTC)"
    assert [s.id for s in body] == ["evidence-generator", "evidence-ups", "evidence-power", "evidence-compliance",
                                    "evidence-thresholds", "evidence-drills"]
    error, _ = page.body("2026-10-09", "2026-10-01")
    assert "before the from date" in error.children


def test_export_without_a_name_is_refused_and_nothing_is_exported(page, db):
    message, download = page.export(1, "2026-10-01", "2026-10-31", "evidence", "  ", [], None)
    assert "enter your name" in message.children and download is evidence_page.no_update
    assert not any(e.action == AuditAction.EXPORT for e in AuditLog.open(db).entries())


def test_revealing_names_needs_a_reason(page):
    message, _ = page.export(1, "2026-10-01", "2026-10-31", "evidence", "auditor", ["reveal"], " ")
    assert "needs a reason" in message.children
    assert export_request("2026-10-01", "2026-10-31", "evidence", ["reveal"], "ISO audit 2026").reveal_names


def test_export_asks_the_server_side_guard_and_shows_its_refusal(page, db, monkeypatch):
    asked = []

    def refuse(sources, permission, typed_name=None):
        asked.append((permission, typed_name))
        raise Refused("refused: your role does not allow export")

    monkeypatch.setattr(evidence_page, "authorise", refuse)
    message, download = page.export(1, "2026-10-01", "2026-10-31", "evidence", "mallory", [], None)
    assert asked == [("export", "mallory")]
    assert message.children == "not exported: refused: your role does not allow export"
    assert download is evidence_page.no_update


def unpack(download: dict, tmp_path: Path) -> Path:
    assert download["base64"] is True
    path = tmp_path / download["filename"]
    path.write_bytes(base64.b64decode(download["content"]))
    return path


def test_export_builds_a_pseudonymised_pack_that_verifies_and_is_audited(page, db, tmp_path):
    message, download = page.export(1, "2026-10-01", "2026-10-31", "evidence", "A. Auditor", [], None)
    assert "signed by key" in message.children and "names pseudonymised" in message.children
    pack = unpack(download, tmp_path)
    assert pack.name == "facwatch-evidence-evidence-2026-10-01-2026-10-31.zip"
    assert verify_pack(pack).ok, verify_pack(pack).text()
    with zipfile.ZipFile(pack) as z:
        manifest = json.loads(z.read("manifest.json"))
        runs = json.loads(z.read("records/generator_runs.json"))
        acks = json.loads(z.read("records/acknowledgements.json"))
    assert manifest["kind"] == "evidence" and manifest["reveal_names"] is False
    assert len(runs) == 2 and all(r["scenario"] is None for r in runs)  # the drill run stays out
    assert [a["acknowledged_by"][:7] for a in acks] == ["person-"]
    export = [e for e in AuditLog.open(db).entries() if e.action == AuditAction.EXPORT]
    assert [e.actor for e in export] == ["A. Auditor"] and export[0].source == "dashboard:unknown"


def test_no_name_is_left_in_clear_anywhere_in_a_pseudonymised_pack(page, tmp_path):
    _, download = page.export(1, "2026-10-01", "2026-10-31", "evidence", "A. Auditor", [], None)
    with zipfile.ZipFile(unpack(download, tmp_path)) as z:
        records = [z.read(name).decode() for name in z.namelist() if name.startswith("records/")]
    assert not any("j.smith" in text for text in records)


def test_a_drills_pack_holds_the_drills_only(page, tmp_path):
    _, download = page.export(1, "2026-10-01", "2026-10-31", "drills", "A. Auditor", [], None)
    pack = unpack(download, tmp_path)
    assert verify_pack(pack).ok
    with zipfile.ZipFile(pack) as z:
        manifest = json.loads(z.read("manifest.json"))
    assert manifest["kind"] == "drills" and manifest["rows"]["drill_runs"] == 1


def test_revealed_names_stay_in_the_pack_with_the_reason_audited(page, db, tmp_path):
    _, download = page.export(1, "2026-10-01", "2026-10-31", "evidence", "A. Auditor", ["reveal"], "ISO 27001 audit")
    with zipfile.ZipFile(unpack(download, tmp_path)) as z:
        assert "j.smith" in z.read("records/envelope_compliance.json").decode()
    export = next(e for e in AuditLog.open(db).entries() if e.action == AuditAction.EXPORT)
    assert json.loads(export.details)["reason"] == "ISO 27001 audit"


def test_without_a_sqlite_file_the_page_says_where_evidence_lives(site):
    class NoFile:
        def latest(self, devices=None):
            return []

    clock = FakeClock(START)
    ctx = PageContext(DashboardSources(site, NoFile(), clock=clock), UTC, TickCache(2, clock))
    assert store_file(ctx.sources) is None
    body, _ = EvidencePage(ctx).body("2026-10-01", "2026-10-31")
    assert "SQLite" in body.children
    message, _ = EvidencePage(ctx).export(1, "2026-10-01", "2026-10-31", "evidence", "me", [], None)
    assert "SQLite" in message.children
