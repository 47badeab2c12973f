"""The Evidence page of a sharded site: one shard at a time, its file, its devices, its audit log, its pack.

The site is the power chain of tests/data/sites/evidence_power.yaml (kept together: shard 2/2 of 2) plus
the inlet sensor of evidence_rooms.yaml (shard 1/2). Each shard file is written by the evidence writers,
as `facwatch collect --shard i/2` writes it; the dashboard reads them through alerts/sharded.py.
"""

from __future__ import annotations

import base64
import calendar
import json
import zipfile
from datetime import UTC, date
from pathlib import Path
from typing import Any

import pytest

from alerts.commands import ActionStore
from alerts.rules import load_rules
from alerts.sharded import ShardedActions, ShardedAlertState, ShardSet, shard_files
from collectors.model import Reading
from collectors.sharding import Shard, plan_shards, shard_of
from config.load import Site, load_site
from dashboard.data import DashboardSources, TickCache
from dashboard.evidence_views import Period, store_file
from dashboard.pages import PageContext
from dashboard.pages import evidence as evidence_page
from dashboard.pages.evidence import EvidencePage
from evidence.auditlog import AuditAction, AuditLog
from evidence.records import EvidenceStore, GeneratorRun, UpsSelfTest
from evidence.verify import verify_pack
from storage.sqlite import SqliteStore
from tests.unit.dashboard.conftest import ROOT, FakeClock
from tests.unit.dashboard.test_evidence_page import texts

SENSOR, TEMP = "dh1-inlet-1", "ambient.temperature"
START = float(calendar.timegm((2026, 10, 1, 0, 0, 0)))
OCTOBER = Period(date(2026, 10, 1), date(2026, 10, 31))
SECRETS = ROOT / "config" / "sites" / "demo-secrets"
SITE = f"""
site: {{id: evidence, name: Sharded evidence site}}
rooms:
  - {{id: plant, name: Plant room}}
  - {{id: dh1, name: Data hall 1}}
credentials:
  v3:
    type: snmp_v3
    user: facwatch
    auth_protocol: sha256
    auth_key: {{file: {SECRETS / "snmp-auth-key"}}}
    priv_protocol: aes128
    priv_key: {{file: {SECRETS / "snmp-priv-key"}}}
devices:
  - {{id: ups-a, class: ups, profile: ups/ietf_rfc1628, room: plant, host: 127.0.0.1, port: 30561, credential: v3}}
  - {{id: ups-b, class: ups, profile: ups/apc_powernet, room: plant, host: 127.0.0.1, port: 30562, credential: v3}}
  - {{id: gen-1, class: genset, profile: genset/dse_gencomm, room: plant, host: 127.0.0.1, port: 30530}}
  - {{id: ats-1, class: ats, profile: ats/facwatch_ats, room: plant, host: 127.0.0.1, port: 30531}}
  - {{id: {SENSOR}, class: thsensor, profile: thsensor/generic_xymd02, room: dh1, host: 127.0.0.1, port: 30520,
     modbus: {{unit_id: 1}}, poll_interval_s: 60}}
storage:
  path: facwatch.db
"""
INFLUX = """  influx:
    url: http://127.0.0.1:30802
    token: {file: token}
    database: facwatch
    spool: {path: spool.db}
"""


def write_site(folder: Path, influx: bool = False) -> Site:
    (folder / "token").write_text("test-token\n")
    (folder / "site.yaml").write_text(SITE + (INFLUX if influx else ""))
    return load_site(folder / "site.yaml")


def inside_samples(hours: int = 2) -> list[Reading]:
    return [Reading(SENSOR, TEMP, START + 9 * 86_400 + i * 60, 21.0) for i in range(hours * 60)]


def seed_shards(site: Site, only: tuple[int, ...] = (1, 2)) -> dict[int, Path]:
    """Shard 1: the sensor's samples; shard 2: a generator test and a UPS self-test. Each with its audit log."""
    paths = {shard.index: path for shard, path in shard_files(site.storage_path(), None, 2).items()}
    base = START + 9 * 86_400
    for index in only:
        ActionStore(paths[index]).close()  # what a shard's collector creates first
        if index == 1:
            with SqliteStore(paths[index]) as store:
                store.write(inside_samples())
        else:
            records = EvidenceStore(paths[index])
            records.add(GeneratorRun("gen-1", "test_on_load", base, base + 2400, start_s=8.0, load_pct_mean=58.9,
                                     time_at_min_load_s=2000, longest_at_min_load_s=2000, run_s=2400, passed=True,
                                     criteria={"min_load_pct": 30.0, "min_duration_s": 1800}))
            records.add(UpsSelfTest("ups-a", base + 100, base + 112, "pass", "ok", duration_s=12.0))
            records.close()
        ticks = iter(base + 10 * index + i for i in range(100))
        with AuditLog.open(paths[index], clock=lambda ticks=ticks: next(ticks)) as log:
            for _ in range(index):  # shard 2's log is one record longer
                log.append(AuditAction.ACKNOWLEDGEMENT, "j.smith", f"shard {index}")
            log.checkpoint()
    return paths


def sharded_page(site: Site, readings: Any) -> tuple[EvidencePage, ShardSet]:
    shard_set = ShardSet.open(shard_files(site.storage_path(), None, 2))
    state = ShardedAlertState(shard_set)
    clock = FakeClock(START + 40 * 86_400)
    sources = DashboardSources(site, readings, clock=clock, alerts=state, actions=ShardedActions(shard_set, state),
                               rules=tuple(load_rules()))
    return EvidencePage(PageContext(sources, UTC, TickCache(2, clock))), shard_set


@pytest.fixture
def site(tmp_path: Path) -> Site:
    site = write_site(tmp_path)
    plan = plan_shards(site, 2, load_rules())
    assert (shard_of(SENSOR, 2), plan.owners["ups-a"], plan.trap_shard) == (1, 2, 2)
    return site


@pytest.fixture
def page(site: Site, tmp_path: Path) -> EvidencePage:
    paths = seed_shards(site)
    assert all(path.is_file() for path in paths.values())
    with SqliteStore(tmp_path / "facwatch.db") as unsharded:  # what `facwatch dashboard` opens: no evidence
        page, shard_set = sharded_page(site, unsharded)
        yield page
        shard_set.close()


def find(component: Any, component_id: str) -> Any:
    if getattr(component, "id", None) == component_id:
        return component
    children = getattr(component, "children", None)
    for child in children if isinstance(children, list | tuple) else [children]:
        if child is not None and not isinstance(child, str) and (found := find(child, component_id)) is not None:
            return found
    return None


def test_the_shards_are_offered_with_the_power_chains_shard_chosen(page) -> None:
    dropdown = find(evidence_page.layout(page.ctx, {}), evidence_page.SHARD)
    assert [o["label"] for o in dropdown.options] == ["shard 1/2", "shard 2/2 (power chain)"]
    assert dropdown.value == 2


def test_by_default_the_page_reads_the_power_chains_shard_and_judges_only_its_devices(page) -> None:
    body, label = page.body("2026-10-01", "2026-10-31")
    assert label == "Period 2026-10-01 – 2026-10-31 (UTC), shard 2/2 (4 devices)"
    view = page.view(OCTOBER)
    assert [(r.device, r.result) for r in view.generator_runs.rows] == [("gen-1", "pass")]
    assert [r.device for r in view.ups_tests.rows] == ["ups-a"]
    assert SENSOR not in {r.device for r in view.compliance.rows}
    assert [s.id for s in body][:2] == ["evidence-generator", "evidence-ups"]  # sections, not an error notice


def test_the_other_shard_shows_its_own_records_and_the_compliance_of_its_sensor(page) -> None:
    view = page.view(OCTOBER, 0, 1)
    assert view.generator_runs.rows == () and view.ups_tests.rows == ()
    (row,) = [r for r in view.compliance.rows if r.point == TEMP]
    assert row.device == SENSOR
    warning = next(f for f in row.envelopes if f.level == "warning")
    covered_s = (120 + 2) * 60  # two hours from the shard's own file, the last sample held for 3 polls
    assert warning.inside == f"{100 * covered_s / (31 * 86_400):.2f} %"
    assert page.body("2026-10-01", "2026-10-31", 0, 1)[1].endswith("shard 1/2 (1 devices)")


def test_each_shard_shows_its_own_audit_log(page) -> None:
    records = {shard: next(t for t in texts(page.audit(0, shard)) if t.isdigit()) for shard in (1, 2)}
    assert records[1] != records[2]
    assert all("OK — audit log intact" in texts(page.audit(0, shard)) for shard in (1, 2))


def test_export_packs_the_chosen_shard_and_audits_it_in_that_shards_file(page, site, tmp_path) -> None:
    message, download = page.export(1, "2026-10-01", "2026-10-31", "evidence", "A. Auditor", [], None, 2)
    assert message.children.startswith("shard 2/2: facwatch-evidence-evidence-shard-2-of-2-2026-10-01-")
    pack = tmp_path / download["filename"]
    pack.write_bytes(base64.b64decode(download["content"]))
    assert verify_pack(pack).ok, verify_pack(pack).text()
    with zipfile.ZipFile(pack) as z:
        runs = json.loads(z.read("records/generator_runs.json"))
        compliance = json.loads(z.read("records/envelope_compliance.json"))
    assert [r["device"] for r in runs] == ["gen-1"] and SENSOR not in {r["device"] for r in compliance}
    paths = shard_files(site.storage_path(), None, 2)
    exports = {shard.index: [e for e in AuditLog.open(path).entries() if e.action == AuditAction.EXPORT]
               for shard, path in paths.items()}
    assert len(exports[2]) == 1 and exports[1] == []


def test_store_file_names_the_chosen_shards_file(page, site) -> None:
    paths = shard_files(site.storage_path(), None, 2)
    assert store_file(page.ctx.sources, 1) == paths[Shard(1, 2)]
    assert store_file(page.ctx.sources) is None and store_file(page.ctx.sources, 3) is None


def test_a_shard_that_never_ran_is_named_and_its_file_not_created(site, tmp_path) -> None:
    seed_shards(site, only=(2,))
    with SqliteStore(tmp_path / "facwatch.db") as unsharded:
        page, shard_set = sharded_page(site, unsharded)
        body, _ = page.body("2026-10-01", "2026-10-31", 0, 1)
        message, download = page.export(1, "2026-10-01", "2026-10-31", "evidence", "A. Auditor", [], None, 1)
        audit = page.audit(0, 1)
        assert page.view(OCTOBER, 0, 2).generator_runs.rows  # the other shard still reads
        shard_set.close()
    assert "shard 1/2 has no SQLite file" in body.children and "has no SQLite file" in message.children
    assert download is evidence_page.no_update and "shard 1/2 has no SQLite file" in audit.children
    assert not shard_files(site.storage_path(), None, 2)[Shard(1, 2)].exists()


def test_with_influxdb_compliance_reads_the_dashboards_read_store(tmp_path) -> None:
    site = write_site(tmp_path, influx=True)
    assert site.influx is not None
    seed_shards(site)
    with SqliteStore(tmp_path / "influx-stand-in.db") as readings:
        readings.write(inside_samples(hours=1))  # one hour there, two in the shard's own file
        page, shard_set = sharded_page(site, readings)
        view = page.view(OCTOBER, 0, 1)
        shard_set.close()
    (row,) = [r for r in view.compliance.rows if r.point == TEMP]
    warning = next(f for f in row.envelopes if f.level == "warning")
    assert warning.inside == f"{100 * (60 + 2) * 60 / (31 * 86_400):.2f} %"
