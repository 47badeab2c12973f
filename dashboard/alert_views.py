"""View-models of the Alerts page: active alerts, history, silences, who did what (no Dash here).

Operator input from the browser is checked here before it becomes a command; the ActionStore checks
it again (its ``ValueError`` messages are shown to the operator as they are).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from alerts.commands import Command, SilenceRecord
from alerts.model import Alert, AlertState
from config.load import Site
from dashboard.data import SEVERITY_RANK, format_age

ACTIVE = (AlertState.PENDING, AlertState.FIRING)
HISTORY_LIMIT = 200
DURATIONS: tuple[tuple[str, int], ...] = (
    ("30 min", 1800), ("1 h", 3600), ("4 h", 4 * 3600), ("8 h", 8 * 3600), ("24 h", 86_400), ("3 d", 3 * 86_400),
    ("7 d", 7 * 86_400), ("31 d", 31 * 86_400))
STARTS: tuple[tuple[str, int], ...] = (
    ("now", 0), ("in 1 h", 3600), ("in 4 h", 4 * 3600), ("in 8 h", 8 * 3600), ("in 24 h", 86_400),
    ("in 3 d", 3 * 86_400), ("in 7 d", 7 * 86_400))  # a maintenance window is often booked ahead
KINDS = (("Silence (stop notifications)", "silence"), ("Maintenance window", "maintenance"))


@dataclass(frozen=True, slots=True)
class AlertRow:
    """One active alert as the table shows it."""

    fingerprint: str
    rule: str
    device: str  # the device id ("" for a site-wide alert)
    where: str  # the device's name, or the site
    severity: str
    state: str
    summary: str
    since: float | None
    acked_by: str | None
    acked_at: float | None
    ack_note: str | None
    silenced_by: tuple[int, ...]  # ids of the silences or maintenance windows muting it
    escalated: tuple[str, float] | None  # (receiver, escalated at)
    scenario: str | None

    @property
    def status(self) -> str:
        """``acknowledged``, ``silenced``, ``escalated`` or ``open`` — the first that applies."""
        if self.acked_by:
            return "acknowledged"
        if self.silenced_by:
            return "silenced"
        return "escalated" if self.escalated else "open"


@dataclass(frozen=True, slots=True)
class HistoryRow:
    """One logged state change of an alert."""

    at: float
    rule: str
    where: str
    from_state: str
    to_state: str
    severity: str
    scenario: str | None


@dataclass(frozen=True, slots=True)
class SilenceRow:
    """A silence or maintenance window and whether it is in force."""

    id: int
    kind: str
    matchers: str
    reason: str
    author: str
    starts_at: float
    ends_at: float
    state: str  # "active", "scheduled" or "ended"


@dataclass(frozen=True, slots=True)
class ActionRow:
    """One operator command: who asked for what, from where, and what came of it."""

    id: int
    requested_at: float
    author: str
    source: str
    what: str
    outcome: str  # "pending", "applied" or "refused"
    detail: str


def _where(site: Site, labels: Mapping[str, str]) -> str:
    device_id = labels.get("device")
    if not device_id:
        return "site"
    try:
        return site.device(device_id).label
    except KeyError:
        return device_id


def active_rows(site: Site, alerts: Iterable[Alert], silences: Sequence[SilenceRecord],
                escalations: Mapping[str, tuple[str, float]], now: float) -> list[AlertRow]:
    """Pending and firing alerts, firing first, then worst severity, then the oldest."""
    rows = []
    for alert in alerts:
        if alert.state not in ACTIVE:
            continue
        fp = alert.fingerprint
        rows.append(AlertRow(
            fp, alert.rule, alert.labels.get("device", ""), _where(site, alert.labels), str(alert.severity),
            str(alert.state), alert.summary, alert.fired_at or alert.active_since, alert.acknowledged_by,
            alert.acknowledged_at, alert.ack_note, tuple(s.id for s in silences if s.mutes(alert, now)),
            escalations.get(fp), alert.scenario))
    return sorted(rows, key=lambda r: (r.state != AlertState.FIRING, -SEVERITY_RANK.get(r.severity, 0),
                                       r.since or now, r.rule))


def active_summary(rows: Sequence[AlertRow]) -> str:
    """``12 active: 2 critical, 10 warning · 3 acknowledged, 1 silenced``."""
    if not rows:
        return "no active alerts"
    by_severity: dict[str, int] = {}
    for row in rows:
        by_severity[row.severity] = by_severity.get(row.severity, 0) + 1
    severities = ", ".join(f"{by_severity[s]} {s}" for s in sorted(by_severity, key=lambda s: -SEVERITY_RANK.get(s, 0)))
    acked = sum(1 for r in rows if r.acked_by)
    silenced = sum(1 for r in rows if r.silenced_by and not r.acked_by)
    return f"{len(rows)} active: {severities} · {acked} acknowledged, {silenced} silenced"


def history_rows(site: Site, entries: Iterable[tuple]) -> list[HistoryRow]:
    """Logged transitions as rows, newest first.

    ``entries`` are ``(rule, labels, from_state, to_state, severity, at, scenario)`` tuples, ``labels`` a
    mapping or its JSON text, as the ``alert_transition`` table of alerts/state.py holds them.
    """
    rows = []
    for rule, labels, from_state, to_state, severity, at, scenario in entries:
        if at is None:
            continue
        if isinstance(labels, str):
            labels = _json_labels(labels)
        rows.append(HistoryRow(at, rule, _where(site, labels), from_state or "—", to_state, str(severity), scenario))
    return sorted(rows, key=lambda r: -r.at)


def _json_labels(text: str) -> Mapping[str, str]:
    try:
        labels = json.loads(text)
    except ValueError:
        return {}
    return labels if isinstance(labels, dict) else {}


def history_entries(alerts: Mapping[str, Alert], transitions: Callable[[str], Sequence[tuple]],
                    limit: int = HISTORY_LIMIT) -> list[tuple]:
    """History entries from the per-alert transition log (one query per alert: the slow way)."""
    entries = [(alert.rule, alert.labels, from_state, to_state, str(alert.severity), at, alert.scenario)
               for fp, alert in alerts.items() for from_state, to_state, at in transitions(fp)]
    return sorted((e for e in entries if e[5] is not None), key=lambda e: -e[5])[:limit]


def matchers_text(matchers: Mapping[str, str]) -> str:
    """``device=dh1-ups-a, alertname=ups_on_battery`` (``alertname`` is the rule)."""
    return ", ".join(f"{key}={value}" for key, value in sorted(matchers.items()))


def silence_rows(silences: Iterable[SilenceRecord], now: float) -> list[SilenceRow]:
    """Silences newest first with their state now."""
    rows = []
    for s in silences:
        state = "active" if s.active(now) else ("scheduled" if s.starts_at > now else "ended")
        ends = s.ends_at if s.expired_at is None else min(s.ends_at, s.expired_at)
        rows.append(SilenceRow(s.id, s.kind, matchers_text(s.matchers), s.reason, s.author, s.starts_at, ends, state))
    return rows


def describe_command(command: Command, alerts: Mapping[str, Alert] | None = None) -> str:
    """What a command asked for, in words."""
    payload = command.payload
    if command.kind == "ack":
        fp = str(payload.get("fingerprint", ""))
        alert = (alerts or {}).get(fp)
        target = f"{alert.rule} on {alert.labels.get('device', 'site')}" if alert else fp
        note = str(payload.get("note") or "")
        return f"acknowledge {target}" + (f": {note}" if note else "")
    if command.kind == "silence":
        matchers = payload.get("matchers")
        text = matchers_text(matchers) if isinstance(matchers, Mapping) else "?"
        return f"{payload.get('kind', 'silence')} {text}: {payload.get('reason', '')}"
    if command.kind == "expire_silence":
        return f"expire silence #{payload.get('silence_id')}"
    return str(command.kind)


def action_rows(commands: Iterable[Command], alerts: Mapping[str, Alert] | None = None) -> list[ActionRow]:
    """The command log as rows, newest first (as ActionStore.history() returns them)."""
    return [ActionRow(c.id, c.requested_at, c.author, c.source, describe_command(c, alerts), c.outcome or "pending",
                      c.detail or "") for c in commands]


def ack_options(rows: Sequence[AlertRow]) -> list[dict[str, str]]:
    """Dropdown choices for acknowledging: the active alerts, labelled with severity, rule and where."""
    return [{"label": f"{r.severity.upper()} · {r.rule} · {r.where}", "value": r.fingerprint} for r in rows]


def silence_matchers(site: Site, device: Any, rule: Any) -> dict[str, str]:
    """Label matchers from the form: a configured device and/or a rule name; at least one is required."""
    matchers: dict[str, str] = {}
    if device:
        if not isinstance(device, str) or device not in {d.id for d in site.devices}:
            raise ValueError("unknown device")
        matchers["device"] = device
    if rule:
        if not isinstance(rule, str):
            raise ValueError("unknown rule")
        matchers["alertname"] = rule
    if not matchers:
        raise ValueError("choose a device or a rule to silence (muting everything is not allowed)")
    return matchers


def silence_window(start_s: Any, duration_s: Any, now: float) -> tuple[float, float]:
    """(starts, ends) from the form's start offset (default now) and duration (one of ``DURATIONS``, required)."""
    if isinstance(duration_s, bool) or duration_s not in {seconds for _, seconds in DURATIONS}:
        raise ValueError("choose how long the silence lasts (an expiry is required)")
    if start_s in (None, ""):
        start_s = 0
    if isinstance(start_s, bool) or start_s not in {seconds for _, seconds in STARTS}:
        raise ValueError("choose when the silence starts")
    starts = now + float(start_s)
    return starts, starts + float(duration_s)


def age_text(ts: float | None, now: float) -> str:
    """``3 min ago`` or empty."""
    return format_age(now - ts) if ts is not None else ""
