"""Alertmanager notifier: ``POST /api/v2/alerts`` so an existing Alertmanager routes facwatch alerts."""

from __future__ import annotations

import urllib.parse
from typing import Any

from alerts.notifiers import NotificationBatch, alert_annotations, alert_labels, iso
from alerts.notifiers.webhook import post_json


def postable_alerts(batch: NotificationBatch) -> list[dict[str, Any]]:
    """The v2 API's PostableAlerts; endsAt set only for resolved alerts, which resolves them there."""
    alerts = []
    for alert in batch.alerts:
        item: dict[str, Any] = {"labels": alert_labels(alert), "annotations": alert_annotations(alert),
                                "startsAt": iso(alert.fired_at or alert.active_since)}
        if alert.resolved_at is not None:
            item["endsAt"] = iso(alert.resolved_at)
        alerts.append({k: v for k, v in item.items() if v is not None})
    return alerts


class AlertmanagerNotifier:
    """Pushes alerts to Alertmanager's API (which does its own dedup, so resends are harmless)."""

    def __init__(self, url: str, timeout: float = 10.0):
        self.url = url.rstrip("/") + "/api/v2/alerts"
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"AlertmanagerNotifier({urllib.parse.urlsplit(self.url).hostname!r})"

    async def send(self, batch: NotificationBatch) -> None:
        """Deliver ``batch``; raise DeliveryError on failure."""
        await post_json(self.url, postable_alerts(batch), {}, self.timeout)
