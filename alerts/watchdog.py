"""The heartbeat: an always-firing alert sent every N minutes so an outside dead-man's switch notices silence."""

from __future__ import annotations

from alerts.model import Alert, AlertState
from alerts.notifiers import NotificationBatch
from alerts.outbox import LogEntry, Outbox
from collectors.model import Severity

GROUP_KEY = "watchdog"


def heartbeat_alert(now: float, started: float) -> Alert:
    """The Watchdog alert (the name OpenShift and kube-prometheus use for the same pattern)."""
    return Alert("watchdog", {"device": "facwatch"}, Severity.INFO, AlertState.FIRING, fired_at=started,
                 updated_at=now, summary="facwatch is alive; page if this stops arriving",
                 annotations={"purpose": "dead-man's switch"})


class Watchdog:
    """Enqueues the heartbeat straight to its receiver: silences and inhibition never apply to it."""

    def __init__(self, outbox: Outbox, receiver: str, interval: float, started: float):
        self.outbox, self.receiver, self.interval, self.started = outbox, receiver, interval, started

    def tick(self, now: float) -> bool:
        """Enqueue a heartbeat if the last one is at least one interval old; True if one was."""
        last = self.outbox.last_notified(self.receiver, GROUP_KEY)
        if last is not None and now - last.sent_at < self.interval:
            return False
        alert = heartbeat_alert(now, self.started)
        batch = NotificationBatch(self.receiver, GROUP_KEY, [alert], "firing")
        self.outbox.enqueue(batch, now, LogEntry(frozenset({alert.fingerprint}), frozenset(), now))
        return True
