"""Record sets for evidence packs: ``(db_path, start, end) -> list[dict]`` callables, one per table.

A provider reads its own tables in the shared SQLite file (read-only) and returns plain rows; the pack
builder pseudonymises personal fields and drops drill rows (``scenario`` set) whatever a provider returns.
``pack_providers`` assembles every set an auditor gets: evidence records (generator test runs, UPS
self-tests, power events), envelope compliance (when the site config is known), the alert history and the
thresholds in force (rule versions). ``drill_providers`` are the sets of a separate drills pack.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from config.load import Site
    from storage.base import ReadStore

Provider = Callable[[Path, float, float], list[dict]]


def iso(epoch: float | None) -> str | None:
    """Epoch seconds as ISO 8601 UTC (seconds precision), None stays None."""
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@contextmanager
def read_only(db_path: Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection to the shared file, closed afterwards."""
    conn = sqlite3.connect(f"file:{Path(db_path).resolve()}?mode=ro", uri=True)
    try:
        yield conn
    finally:
        conn.close()


def _rows(db_path: Path, sql: str, args: tuple) -> list[dict]:
    with read_only(db_path) as conn:
        try:
            cursor = conn.execute(sql, args)
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []  # that part of facwatch never ran against this file
            raise
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def alert_transitions(db_path: Path, start: float, end: float) -> list[dict]:
    """Every alert state change in the period (pending, firing, resolved), real events only."""
    rows = _rows(db_path, "SELECT id, at, rule, fingerprint, labels, from_state, to_state, severity, value, scenario "
                          "FROM alert_transition WHERE at >= ? AND at < ? AND scenario IS NULL ORDER BY at, id",
                 (start, end))
    return [{"id": r["id"], "time": iso(r["at"]), **{k: r[k] for k in list(r)[2:]}} for r in rows]


def acknowledgements(db_path: Path, start: float, end: float) -> list[dict]:
    """Alerts acknowledged in the period: who, when, note (the latest acknowledgement per alert)."""
    rows = _rows(db_path, "SELECT acknowledged_at, rule, fingerprint, labels, severity, state, acknowledged_by, "
                          "ack_note, scenario FROM alert_state WHERE acknowledged_at >= ? AND acknowledged_at < ? "
                          "AND scenario IS NULL ORDER BY acknowledged_at", (start, end))
    return [{"time": iso(r.pop("acknowledged_at")), **r} for r in rows]


def operator_commands(db_path: Path, start: float, end: float) -> list[dict]:
    """Every operator action asked for in the period (ack, silence, expire) with its author, source, outcome."""
    rows = _rows(db_path, "SELECT id, requested_at, kind, payload, author, source, applied_at, outcome, detail "
                          "FROM operator_command WHERE requested_at >= ? AND requested_at < ? ORDER BY id",
                 (start, end))
    return [{**r, "requested_at": iso(r["requested_at"]), "applied_at": iso(r["applied_at"])} for r in rows]


def silences(db_path: Path, start: float, end: float) -> list[dict]:
    """Silences and maintenance windows in force at any time in the period."""
    rows = _rows(db_path, "SELECT id, kind, matchers, severities, reason, author, starts_at, ends_at, created_at, "
                          "expired_at, expired_by FROM silence WHERE starts_at < ? AND COALESCE(expired_at, ends_at) "
                          ">= ? ORDER BY starts_at, id", (end, start))
    times = ("starts_at", "ends_at", "created_at", "expired_at")
    return [{**r, **{k: iso(r[k]) for k in times}, "matchers": json.dumps(json.loads(r["matchers"]))}
            for r in rows]


def alert_providers() -> Mapping[str, Provider]:
    """The alert-history record sets, in the order the report shows them."""
    return {"alert_transitions": alert_transitions, "acknowledgements": acknowledgements,
            "operator_commands": operator_commands, "silences": silences}


def evidence_record_providers() -> Mapping[str, Provider]:
    """Generator test runs, UPS self-tests and power events from ``evidence.records`` (real ones only)."""
    from evidence.records import EvidenceStore

    def reader(method: str) -> Provider:
        def provide(db_path: Path, start: float, end: float) -> list[dict]:
            store = EvidenceStore(db_path)
            try:
                return getattr(store, method)(start, end)
            finally:
                store.close()

        return provide

    return {name: reader(name) for name in ("generator_runs", "ups_self_tests", "power_events")}


def compliance_provider(site: Site, readings: ReadStore | None = None) -> Provider:
    """Envelope compliance per room, sensor and month, from ``evidence.compliance``.

    ``readings``: where the samples are (the InfluxStore with ``storage.influx``); default the SQLite file's.
    """
    from evidence.compliance import envelope_compliance

    def provide(db_path: Path, start: float, end: float) -> list[dict]:
        return envelope_compliance(db_path, site, start, end, readings=readings)

    return provide


def pack_providers(site: Site | None = None, readings: ReadStore | None = None) -> dict[str, Provider]:
    """Every record set of an evidence pack, in report order; compliance needs the site config (and its readings)."""
    providers: dict[str, Provider] = dict(evidence_record_providers())
    if site is not None:
        providers["envelope_compliance"] = compliance_provider(site, readings)
    providers.update(alert_providers())
    providers["rule_versions"] = rule_version_provider()
    return providers


def rule_version_provider() -> Provider:
    """Thresholds in force: every rule version valid in the period, with who changed it, when and why."""
    from evidence.thresholds import rule_versions

    return rule_versions


def drill_providers() -> dict[str, Provider]:
    """The record sets of a drills pack (``facwatch evidence export --drills``): runs and their timings."""
    from evidence.drill import drill_runs, drill_timings

    return {"drill_runs": drill_runs, "drill_timings": drill_timings}
