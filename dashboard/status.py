"""Site-wide status: the stale/down banner on every page, the wall's alert list, and the wall summary."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, tzinfo

from alerts.model import Alert, AlertState
from collectors.model import Severity
from dashboard.climate import RoomView, room_views
from dashboard.data import SEVERITY_RANK, format_age, stale_after
from dashboard.fire_safety import FireView, fire_view
from dashboard.live import Snapshot
from dashboard.power_chain import PowerChainView, power_chain_view

# Components write a heartbeat every few seconds (alerting ticks every 2 s); 30 s without one is down.
HEARTBEAT_TIMEOUT_S = 30.0
COMPONENTS = (("collector", "COLLECTOR DOWN"), ("alerting", "ALERT ENGINE DOWN"))
MAX_WALL_ALERTS = 12


@dataclass(frozen=True, slots=True)
class BannerMessage:
    """One thing the operator must know about the monitor itself (``kind``: stale, down, error, nodata)."""

    kind: str
    text: str


@dataclass(frozen=True, slots=True)
class AlertRow:
    """One active alert as the wall lists it: what, where, since when, who owns it."""

    fingerprint: str
    severity: str
    state: str  # pending or firing
    summary: str
    device: str
    age_text: str
    owner: str  # who acknowledged it, or "unowned"
    acknowledged: bool
    drill: bool


@dataclass(frozen=True, slots=True)
class WallView:
    """The whole site in one view."""

    power: PowerChainView
    rooms: tuple[RoomView, ...]
    fire: FireView
    alerts: tuple[AlertRow, ...]
    alerts_hidden: int  # firing alerts beyond the ones listed
    pending: int  # alerts waiting out their hold time: counted, not listed (a wall is for what fires)
    alerts_available: bool


def since_text(ts: float, now: float, tz: tzinfo | None) -> str:
    """A time of day for "since": ``14:02``, or with the date when it is not today."""
    moment = datetime.fromtimestamp(ts, tz) if tz is not None else datetime.fromtimestamp(ts).astimezone()
    today = datetime.fromtimestamp(now, moment.tzinfo)
    return moment.strftime("%H:%M") if moment.date() == today.date() else moment.strftime("%Y-%m-%d %H:%M")


def banner(snapshot: Snapshot) -> tuple[BannerMessage, ...]:
    """Everything that makes the pages untrustworthy right now, worst first; empty when all is well."""
    messages = []
    site, now, tz = snapshot.site, snapshot.now, snapshot.tz
    if snapshot.readings is None:
        messages.append(BannerMessage("error", "STORE UNAVAILABLE — no data can be shown"))
    if snapshot.heartbeats is not None:
        for component, text in COMPONENTS:
            beat = snapshot.heartbeats.get(component)
            if beat is not None and now - beat.at > HEARTBEAT_TIMEOUT_S:
                messages.append(BannerMessage("down", f"{text} since {since_text(beat.at, now, tz)}"))
        messages.extend(_shards_down(snapshot))
    elif snapshot.heartbeats_error:
        messages.append(BannerMessage("error", "HEARTBEATS UNAVAILABLE — cannot tell if facwatch is running"))
    if snapshot.alerts_error:
        messages.append(BannerMessage("error", "ALERT STATE UNAVAILABLE — alerts cannot be shown"))
    for shard in snapshot.unavailable_shards:
        messages.append(BannerMessage("error", f"SHARD {shard} UNAVAILABLE — its alerts and heartbeats "
                                               "cannot be read"))
    if snapshot.readings is not None:
        newest = max((r.ts for points in snapshot.readings.values() for r in points.values()), default=None)
        limit = max((stale_after(d, snapshot.refresh_s) for d in site.devices), default=0.0)
        if newest is None:
            messages.append(BannerMessage("nodata", "NO DATA YET — nothing has been collected"))
        elif now - newest > limit:
            messages.append(BannerMessage("stale", f"DATA STALE since {since_text(newest, now, tz)}"))
    return tuple(messages)


def _shards_down(snapshot: Snapshot) -> list[BannerMessage]:
    """``COLLECTOR 2/2 DOWN since 14:02`` for each shard component (``collector@2-of-2``) gone quiet."""
    order = {component: rank for rank, (component, _) in enumerate(COMPONENTS)}
    quiet = []
    for name, beat in (snapshot.heartbeats or {}).items():
        component, _, label = name.partition("@")
        index, _, count = label.partition("-of-")
        if component in order and index.isdigit() and count.isdigit() and snapshot.now - beat.at > HEARTBEAT_TIMEOUT_S:
            quiet.append((order[component], int(index), int(count), beat.at))
    words = [text for _, text in COMPONENTS]
    return [BannerMessage("down", words[rank].replace(" DOWN", f" {index}/{count} DOWN") +
                          f" since {since_text(at, snapshot.now, snapshot.tz)}")
            for rank, index, count, at in sorted(quiet)]


def alert_rows(snapshot: Snapshot) -> list[AlertRow]:
    """Active alerts, firing before pending, worst first, newest first."""
    labels = {d.id: d.label for d in snapshot.site.devices}
    alerts = sorted(snapshot.active_alerts(), key=_alert_order)
    return [_row(alert, snapshot.now, labels) for alert in alerts]


def _alert_order(alert: Alert) -> tuple:
    started = alert.fired_at or alert.active_since or 0.0
    return (alert.state != AlertState.FIRING, -SEVERITY_RANK.get(alert.severity, 0), -started)


def _row(alert: Alert, now: float, labels: dict[str, str]) -> AlertRow:
    device = alert.labels.get("device", "")
    started = alert.fired_at or alert.active_since
    return AlertRow(
        fingerprint=alert.fingerprint, severity=Severity(alert.severity).value, state=str(alert.state),
        summary=alert.summary or alert.rule, device=labels.get(device, device or alert.labels.get("site", "")),
        age_text=format_age(now - started).removesuffix(" ago") if started else "—",
        owner=alert.acknowledged_by or "unowned", acknowledged=alert.acknowledged_by is not None,
        drill=alert.scenario is not None)


def new_critical(snapshot: Snapshot) -> list[tuple[str, str]]:
    """(fingerprint, summary) of firing critical alerts nobody has acknowledged yet."""
    return [(a.fingerprint, a.summary or a.rule) for a in snapshot.active_alerts()
            if a.state == AlertState.FIRING and a.severity == Severity.CRITICAL and a.acknowledged_by is None]


def wall_view(snapshot: Snapshot) -> WallView:
    """The wall: power, cooling per room, fire, and the active alerts."""
    everything = alert_rows(snapshot)
    rows = [row for row in everything if row.state == AlertState.FIRING]
    return WallView(snapshot.view("power", power_chain_view), tuple(snapshot.view("rooms", room_views)),
                    snapshot.view("fire", fire_view),
                    tuple(rows[:MAX_WALL_ALERTS]), max(0, len(rows) - MAX_WALL_ALERTS),
                    len(everything) - len(rows), snapshot.alerts is not None)
