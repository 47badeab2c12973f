"""Log notifier: one line per alert on the ``facwatch.notify`` logger (the demo's and the last-resort channel)."""

from __future__ import annotations

import logging

from alerts.notifiers import NotificationBatch

LOGGER = logging.getLogger("facwatch.notify")


class LogNotifier:
    """Writes each alert of a batch to the log; never fails."""

    def __init__(self, logger: logging.Logger = LOGGER):
        self.logger = logger

    async def send(self, batch: NotificationBatch) -> None:
        """Log ``batch``, one line per alert."""
        for alert in batch.alerts:
            self.logger.warning("[%s] %s %s %s %s: %s", batch.receiver, batch.status.upper(), alert.severity,
                                alert.rule, alert.labels.get("device", "-"), alert.summary)
