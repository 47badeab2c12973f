"""Schema and loader for ``config/notify.yaml``: receivers, the route tree, inhibition, escalation, delivery.

Strict like the site schema: unknown keys are errors, secrets come from env or file only, plain-text
channels (SMTP without STARTTLS, http:// off loopback) need an explicit ``insecure: true``.
"""

from __future__ import annotations

import ipaddress
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from alerts.model import Alert
from collectors.model import Severity
from config.load import read_secret
from config.schema import HostName, Name, Port, SecretRef, _number, _Strict, _text
from config.secret import Secret
from config.yamlfile import ConfigError, load_yaml, validate

DurationS = _number(gt=0, le=7 * 86_400, unit="seconds")
Minutes = _number(gt=0, le=10_000, unit="minutes")
Timeout = _number(gt=0, le=120, unit="seconds")
Slug = _text(r"^[a-z][a-z0-9_]{0,63}$", "must be a receiver name: lower-case letters, digits and _ (e.g. noc_pager)")


def _is_loopback(url: str) -> bool:
    host = urllib.parse.urlsplit(url).hostname or ""
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_url(url: str, insecure: bool) -> None:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("url must be http(s)://host[:port]/path")
    if parts.scheme == "http" and not insecure and not _is_loopback(url):
        raise ValueError("http:// sends alerts in clear text; use https://, or set insecure: true to accept that")


class WebhookReceiver(_Strict):
    """POST JSON signed with ``X-Facwatch-Signature: sha256=<HMAC>``."""

    type: Literal["webhook"]
    url: Name
    hmac_key: SecretRef
    insecure: bool = False
    timeout: Timeout = 10.0

    @model_validator(mode="after")
    def _url(self) -> WebhookReceiver:
        _check_url(self.url, self.insecure)
        return self


class EmailReceiver(_Strict):
    """SMTP with STARTTLS (verified against the system CAs or ``ca_file``)."""

    type: Literal["email"]
    host: HostName
    port: Port = 587
    sender: Name = Field(alias="from")
    to: list[Name] = Field(min_length=1)
    username: Name | None = None
    password: SecretRef | None = None
    insecure: bool = False  # allow a relay without STARTTLS; certificates are still verified when offered
    ca_file: Name | None = None
    timeout: Timeout = 10.0

    @model_validator(mode="after")
    def _login_pair(self) -> EmailReceiver:
        if (self.username is None) != (self.password is None):
            raise ValueError("give both username and password, or neither")
        return self


class AlertmanagerReceiver(_Strict):
    """An Alertmanager's base URL; alerts are pushed to its /api/v2/alerts."""

    type: Literal["alertmanager"]
    url: Name
    insecure: bool = False
    timeout: Timeout = 10.0

    @model_validator(mode="after")
    def _url(self) -> AlertmanagerReceiver:
        _check_url(self.url, self.insecure)
        return self


class LogReceiver(_Strict):
    """The facwatch.notify log."""

    type: Literal["log"]


Receiver = Annotated[WebhookReceiver | EmailReceiver | AlertmanagerReceiver | LogReceiver, Field(discriminator="type")]


class Match(_Strict):
    """Labels that must be equal, plus optionally the severities accepted."""

    labels: dict[str, str] = Field(default_factory=dict)
    severity: list[Severity] | None = None

    def matches(self, alert: Alert) -> bool:
        """True when every label is equal and the severity is accepted."""
        if self.severity is not None and alert.severity not in self.severity:
            return False
        return all(alert.labels.get(k) == v or (k == "alertname" and alert.rule == v) for k, v in self.labels.items())


class Route(_Strict):
    """A node of the route tree; timings not given are inherited from the parent."""

    receiver: Slug | None = None
    match: Match = Match()
    group_by: list[str] | None = None
    group_wait: DurationS | None = None
    group_interval: DurationS | None = None
    repeat_interval: DurationS | None = None
    continue_: bool = Field(False, alias="continue")
    routes: list[Route] = Field(default_factory=list)


class InhibitRule(_Strict):
    """A firing source alert mutes target alerts that agree with it on every ``equal`` label."""

    source: Match
    target: Match
    equal: list[str] = Field(min_length=1)


class Escalation(_Strict):
    """A firing alert nobody acknowledged after ``after_minutes`` also goes to ``receiver``."""

    match: Match = Match()
    after_minutes: Minutes
    receiver: Slug


class Maintenance(_Strict):
    """A configured maintenance window: reason and end are required so no mute lasts forever."""

    match: Match
    starts_at: float = Field(ge=0)
    ends_at: float = Field(gt=0)
    reason: Name


class Delivery(_Strict):
    """Outbox retry policy and the meta-alert raised when a receiver keeps failing."""

    initial_backoff: DurationS = 2.0
    max_backoff: DurationS = 60.0
    failing_after_minutes: Minutes = 5.0
    meta_receivers: list[Slug] = Field(min_length=1)


class Watchdog(_Strict):
    """An always-firing heartbeat for an outside dead-man's switch."""

    receiver: Slug
    interval_minutes: Minutes = 2.0


class NotifyFile(_Strict):
    """The whole of notify.yaml."""

    receivers: dict[Slug, Receiver] = Field(min_length=1)
    route: Route
    inhibit: list[InhibitRule] = Field(default_factory=list)
    escalations: list[Escalation] = Field(default_factory=list)
    maintenance: list[Maintenance] = Field(default_factory=list)
    delivery: Delivery
    watchdog: Watchdog | None = None

    @model_validator(mode="after")
    def _root_complete(self) -> NotifyFile:
        root = self.route
        if None in (root.receiver, root.group_by, root.group_wait, root.group_interval, root.repeat_interval):
            raise ValueError("the root route needs receiver, group_by, group_wait, group_interval, repeat_interval")
        return self


@dataclass(frozen=True, slots=True)
class NotifyConfig:
    """A validated notify.yaml with its secrets read (keyed by receiver name)."""

    file: NotifyFile
    secrets: Mapping[str, Secret]
    source: Path


def load_notify_config(path: str | Path) -> NotifyConfig:
    """Load, validate and cross-check notify.yaml; every problem in one ConfigError."""
    doc = load_yaml(path)
    model = validate(NotifyFile, doc)
    problems = [doc.problem(loc, message) for loc, message in _unknown_receivers(model)]
    secrets: dict[str, Secret] = {}
    for name, receiver in model.receivers.items():
        field = "hmac_key" if isinstance(receiver, WebhookReceiver) else "password"
        ref = getattr(receiver, field, None)
        if ref is not None:
            value, message = read_secret(ref, Path(path), 1)
            if message:
                problems.append(doc.problem(("receivers", name, field), message))
            secrets[name] = Secret(value)
    if problems:
        raise ConfigError(problems)
    return NotifyConfig(model, secrets, Path(path))


def _unknown_receivers(model: NotifyFile) -> Iterator[tuple[tuple, str]]:
    names = set(model.receivers)
    for loc, name in _receiver_refs(model):
        if name not in names:
            yield loc, f"no receiver named {name!r} (receivers: {', '.join(sorted(names))})"


def _receiver_refs(model: NotifyFile) -> Iterator[tuple[tuple, str]]:
    stack: list[tuple[tuple, Route]] = [(("route",), model.route)]
    while stack:
        loc, route = stack.pop()
        if route.receiver:
            yield (*loc, "receiver"), route.receiver
        stack += [((*loc, "routes", i), child) for i, child in enumerate(route.routes)]
    yield from ((("escalations", i, "receiver"), e.receiver) for i, e in enumerate(model.escalations))
    yield from ((("delivery", "meta_receivers", i), r) for i, r in enumerate(model.delivery.meta_receivers))
    if model.watchdog:
        yield ("watchdog", "receiver"), model.watchdog.receiver

