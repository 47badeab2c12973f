"""Webhook notifier: an Alertmanager-webhook-shaped JSON body, signed with HMAC-SHA256."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import http.client
import json
import ssl
import urllib.parse
from typing import Any

from alerts.model import AlertState
from alerts.notifiers import (
    DeliveryError,
    NotificationBatch,
    alert_annotations,
    alert_labels,
    iso,
)
from config.secret import Secret

SIGNATURE_HEADER = "X-Facwatch-Signature"


def sign(body: bytes, key: Secret) -> str:
    """The signature header value: ``sha256=<hex HMAC-SHA256 of the body>``."""
    return "sha256=" + hmac.new(key.reveal().encode(), body, hashlib.sha256).hexdigest()


def webhook_body(batch: NotificationBatch) -> dict[str, Any]:
    """The JSON document, shaped like Alertmanager's webhook (version 4)."""
    alerts = [{"status": "firing" if a.state == AlertState.FIRING else "resolved", "labels": alert_labels(a),
               "annotations": alert_annotations(a), "startsAt": iso(a.fired_at or a.active_since),
               "endsAt": iso(a.resolved_at), "fingerprint": a.fingerprint} for a in batch.alerts]
    common = set.intersection(*(set(x["labels"].items()) for x in alerts)) if alerts else set()
    return {"version": "4", "receiver": batch.receiver, "status": batch.status, "groupKey": batch.group_key,
            "groupLabels": batch.group_labels, "commonLabels": dict(sorted(common)), "alerts": alerts}


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (the HTTP-date form is rare from webhooks and ignored)."""
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def _post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> None:
    """POST and classify the answer: 2xx ok; 5xx and 429 retryable; other statuses not."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https":
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            parts.hostname or "", parts.port, timeout=timeout, context=ssl.create_default_context())
    else:
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)
    path = parts.path or "/"
    try:
        conn.request("POST", path + (f"?{parts.query}" if parts.query else ""), body,
                     {"Content-Type": "application/json", **headers})
        response = conn.getresponse()
        response.read()
    except OSError as exc:  # refused, reset, timeout, TLS failure: the endpoint may come back
        # the URL may carry a token, so only the host is named
        raise DeliveryError(f"{parts.hostname}: {type(exc).__name__}", retryable=True) from None
    finally:
        conn.close()
    if response.status < 300:
        return
    retryable = response.status >= 500 or response.status == 429
    raise DeliveryError(f"{parts.hostname}: HTTP {response.status}", retryable=retryable,
                        retry_after=_retry_after(response.getheader("Retry-After")))


async def post_json(url: str, document: Any, headers: dict[str, Any], timeout: float) -> bytes:
    """POST a JSON document off the event loop; returns the body sent."""
    body = json.dumps(document, separators=(",", ":")).encode()
    await asyncio.to_thread(_post, url, body, {k: (v(body) if callable(v) else v) for k, v in headers.items()},
                            timeout)
    return body


class WebhookNotifier:
    """POSTs each batch to one URL with an HMAC signature the receiver can verify."""

    def __init__(self, url: str, key: Secret, timeout: float = 10.0):
        self.url = url
        self.key = key
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"WebhookNotifier({urllib.parse.urlsplit(self.url).hostname!r})"

    async def send(self, batch: NotificationBatch) -> None:
        """Deliver ``batch``; raise DeliveryError on failure."""
        await post_json(self.url, webhook_body(batch), {SIGNATURE_HEADER: lambda body: sign(body, self.key)},
                        self.timeout)
