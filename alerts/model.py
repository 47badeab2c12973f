"""The alert data model shared by rules, engine, pipeline and notifiers."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from collectors.model import Severity


class AlertState(StrEnum):
    """Lifecycle of one alert (Prometheus rules/alerting.go): acks, silences, maintenance are flags."""

    INACTIVE = "inactive"
    PENDING = "pending"  # condition true, waiting out the rule's `for`
    FIRING = "firing"
    RESOLVED = "resolved"  # condition cleared (past hysteresis and clear delay); kept for a while


def fingerprint(rule: str, labels: Mapping[str, str]) -> str:
    """Stable identity of an alert: its rule plus its labels, order-independent."""
    text = json.dumps({"rule": rule, "labels": dict(sorted(labels.items()))}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert instance: a rule matched to a device (and point), with its state and context.

    Example: ``Alert("inlet_temperature_high", {"device": "dh1-rack-a01-inlet", "room": "dh1",
    "device_class": "thsensor", "point": "ambient.temperature"}, Severity.WARNING, AlertState.FIRING,
    value=23.6, summary="Rack A01 inlet 23.6 °C > 23 °C")``.
    """

    rule: str
    labels: Mapping[str, str]
    severity: Severity
    state: AlertState
    value: float | None = None
    summary: str = ""
    annotations: Mapping[str, str] = field(default_factory=dict)  # envelope, runbook, method of a derived value
    active_since: float | None = None  # condition first true (pending started)
    fired_at: float | None = None
    resolved_at: float | None = None
    updated_at: float | None = None
    acknowledged_by: str | None = None
    acknowledged_at: float | None = None
    ack_note: str | None = None
    scenario: str | None = None  # raised by scenario/drill readings: kept out of real evidence

    @property
    def fingerprint(self) -> str:
        """Identity by rule + labels."""
        return fingerprint(self.rule, self.labels)
