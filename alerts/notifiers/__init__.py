"""The notifier seam: a batch of grouped alerts in, success or a DeliveryError (retryable or not) out."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from alerts.model import Alert, AlertState
from collectors.model import Severity

if TYPE_CHECKING:
    from alerts.notify_config import NotifyConfig

BatchStatus = Literal["firing", "resolved"]


class DeliveryError(Exception):
    """A failed delivery; ``retryable`` says whether the outbox should try again (5xx, 429, network)."""

    def __init__(self, reason: str, *, retryable: bool, retry_after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class NotificationBatch:
    """One notification: the alerts of one group, for one receiver."""

    receiver: str
    group_key: str
    alerts: list[Alert]
    status: BatchStatus
    group_labels: dict[str, str] = field(default_factory=dict)


class Notifier(Protocol):
    """Delivers a batch or raises DeliveryError."""

    async def send(self, batch: NotificationBatch) -> None:
        """Deliver ``batch``; raise DeliveryError on failure."""


def batch_status(alerts: list[Alert]) -> BatchStatus:
    """Firing while any alert of the group fires (Alertmanager's rule)."""
    return "firing" if any(a.state == AlertState.FIRING for a in alerts) else "resolved"


def iso(timestamp: float | None) -> str | None:
    """RFC 3339 UTC text of a Unix time, as Alertmanager expects."""
    if timestamp is None:
        return None
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).isoformat().replace("+00:00", "Z")


def alert_labels(alert: Alert) -> dict[str, str]:
    """The alert's labels plus alertname and severity, Prometheus-style."""
    return {**alert.labels, "alertname": alert.rule, "severity": str(alert.severity)}


def alert_annotations(alert: Alert) -> dict[str, str]:
    """Summary, value and the rule's annotations (envelope, runbook) as strings."""
    notes = {k: str(v) for k, v in alert.annotations.items()}
    if alert.summary:
        notes["summary"] = alert.summary
    if alert.value is not None:
        notes["value"] = f"{alert.value:g}"
    if alert.acknowledged_by:
        notes["acknowledged_by"] = alert.acknowledged_by
    return notes


_TIMES = ("active_since", "fired_at", "resolved_at", "updated_at", "acknowledged_at")


def alert_to_dict(alert: Alert) -> dict[str, Any]:
    """JSON-safe form of an alert, for the outbox."""
    data: dict[str, Any] = {"rule": alert.rule, "labels": dict(alert.labels), "severity": str(alert.severity),
                            "state": str(alert.state), "value": alert.value, "summary": alert.summary,
                            "annotations": dict(alert.annotations), "acknowledged_by": alert.acknowledged_by,
                            "ack_note": alert.ack_note, "scenario": alert.scenario}
    data.update({name: getattr(alert, name) for name in _TIMES})
    return data


def alert_from_dict(data: dict[str, Any]) -> Alert:
    """Inverse of alert_to_dict."""
    values = dict(data)
    values["severity"] = Severity(values["severity"])
    values["state"] = AlertState(values["state"])
    return Alert(**values)


def batch_to_dict(batch: NotificationBatch) -> dict[str, Any]:
    """JSON-safe form of a batch, for the outbox."""
    return {"receiver": batch.receiver, "group_key": batch.group_key, "status": batch.status,
            "group_labels": batch.group_labels, "alerts": [alert_to_dict(a) for a in batch.alerts]}


def batch_from_dict(data: dict[str, Any]) -> NotificationBatch:
    """Inverse of batch_to_dict."""
    return NotificationBatch(data["receiver"], data["group_key"], [alert_from_dict(a) for a in data["alerts"]],
                             data["status"], dict(data.get("group_labels", {})))


def build_notifiers(config: NotifyConfig) -> dict[str, Notifier]:
    """One notifier per configured receiver, secrets taken from the loaded config."""
    from alerts.notifiers.alertmanager import AlertmanagerNotifier
    from alerts.notifiers.email import EmailNotifier
    from alerts.notifiers.log import LogNotifier
    from alerts.notifiers.webhook import WebhookNotifier
    from alerts.notify_config import AlertmanagerReceiver, EmailReceiver, WebhookReceiver

    notifiers: dict[str, Notifier] = {}
    for name, r in config.file.receivers.items():
        if isinstance(r, WebhookReceiver):
            notifiers[name] = WebhookNotifier(r.url, config.secrets[name], r.timeout)
        elif isinstance(r, EmailReceiver):
            notifiers[name] = EmailNotifier(r.host, r.port, r.sender, list(r.to), username=r.username,
                                            password=config.secrets.get(name), insecure=r.insecure,
                                            ca_file=r.ca_file, timeout=r.timeout)
        elif isinstance(r, AlertmanagerReceiver):
            notifiers[name] = AlertmanagerNotifier(r.url, r.timeout)
        else:
            notifiers[name] = LogNotifier()
    return notifiers
