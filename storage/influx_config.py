"""Configuration of the InfluxDB store (``storage: {influx: ...}`` in a site file): strict, secrets by reference.

Example::

    storage:
      influx:
        url: https://influx.dc1.example:8086
        token: {file: secrets/influx-token}        # or username + password: {env: INFLUX_PASSWORD}
        org: facilities
        database: facwatch                         # InfluxQL database (2.x: the DBRP-mapped name)
        bucket: facwatch/autogen                   # write target; default database[/retention_policy]
        tls: {verify: true, ca_file: certs/dc-ca.pem}
        spool: {path: var/influx-spool.db, max_lines: 20000000}

Which server understands what: InfluxDB 1.8+ serves ``/api/v2/write`` (bucket ``db/rp``, org ignored,
token ``user:password``) and InfluxQL on ``/query``; 2.x needs a token and a DBRP mapping for InfluxQL;
3.x serves both with a token. 1.7 and older have no ``/api/v2/write`` and are refused by the server (404).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import StrictBool, model_validator

from config.fields import Name, Seconds, SecretRef, _number, _Strict, _text
from config.secret import Secret

HttpUrl = _text(r"^https?://[A-Za-z0-9.:_\[\]-]{1,253}(/[^\s?#]*)?$",
                "must be an http:// or https:// URL without query, e.g. https://influx.example:8086")
DbName = _text(r"^[A-Za-z0-9_][A-Za-z0-9_./-]{0,127}$", "must be a database or bucket name (letters, digits, _ . / -)")
BatchLines = _number(ge=1, le=100_000, integer=True)
InFlight = _number(ge=1, le=16, integer=True)
RetrySeconds = _number(ge=1, le=3600, unit="seconds")
SpoolLines = _number(ge=1_000, le=2_000_000_000, integer=True)
WarnFraction = _number(gt=0, le=1)
RetentionDays = _number(gt=0, le=36500, unit="days")


class InfluxTls(_Strict):
    """TLS for an https:// URL: verify the server (default) against the system CAs or ``ca_file``."""

    verify: StrictBool = True
    ca_file: Name | None = None  # relative to the config file


class InfluxSpool(_Strict):
    """The durable outbox (storage/spool.py): its file and how many lines it may hold before dropping the oldest."""

    path: Name = "var/influx-spool.db"  # relative to the config file; one per writing process
    # a line is one poll of one device (all its points at one instant); ~200-1000 bytes on disk each
    max_lines: SpoolLines = 20_000_000
    warn_fraction: WarnFraction = 0.8


class InfluxConfig(_Strict):
    """Where and how facwatch writes to and reads from InfluxDB."""

    url: HttpUrl
    token: SecretRef | None = None
    username: Name | None = None
    password: SecretRef | None = None
    org: Name = "-"  # InfluxDB 1.8 ignores it
    database: DbName
    retention_policy: DbName | None = None
    bucket: DbName | None = None
    tls: InfluxTls = InfluxTls()
    timeout_s: Seconds = 10.0
    batch_lines: BatchLines = 5_000
    max_in_flight: InFlight = 2
    retry_time_s: RetrySeconds = 60.0  # the client's own retries per batch; the spool then retries forever
    # None: the server's retention policy / bucket retention deletes old data; a number: apply_retention
    # issues an InfluxQL DELETE (InfluxDB 1.x only; 2.x/3.x refuse DELETE over InfluxQL).
    retention_days: RetentionDays | None = None
    spool: InfluxSpool = InfluxSpool()

    @model_validator(mode="after")
    def _one_way_to_authenticate(self) -> InfluxConfig:
        if self.username is not None and self.password is None:
            raise ValueError("username needs a password ({env: VARIABLE} or {file: PATH})")
        if self.password is not None and self.username is None:
            raise ValueError("password needs a username")
        if self.token is not None and self.username is not None:
            raise ValueError("give either token or username + password, not both")
        if self.token is None and self.username is None:
            raise ValueError("give token (InfluxDB 2.x/3.x) or username + password (1.8)")
        return self

    @model_validator(mode="after")
    def _tls_only_for_https(self) -> InfluxConfig:
        if self.url.startswith("http://") and (self.tls.ca_file is not None or not self.tls.verify):
            raise ValueError("tls options apply to https:// URLs only; this url is http://")
        return self

    @property
    def write_bucket(self) -> str:
        """The bucket writes go to: ``bucket``, else InfluxDB 1.8's ``database/retention_policy`` form."""
        if self.bucket is not None:
            return self.bucket
        return f"{self.database}/{self.retention_policy}" if self.retention_policy else self.database


@dataclass(frozen=True, slots=True)
class InfluxConnection:
    """An InfluxConfig with its secrets read and its paths made absolute: what InfluxStore needs."""

    config: InfluxConfig
    token: Secret | None
    username: str | None
    password: Secret | None
    ca_file: Path | None
    spool_path: Path

    @property
    def write_token(self) -> Secret:
        """The token the client sends: the token, or 1.8's ``user:password`` form."""
        if self.token is not None:
            return self.token
        assert self.password is not None  # the config validator guarantees one of the two
        return Secret(f"{self.username}:{self.password.reveal()}")


Located = tuple[tuple[str, ...], str]  # (path below storage.influx, message)


def resolve_influx(config: InfluxConfig, source: Path) -> tuple[InfluxConnection, list[str]]:
    """Read the secrets and resolve paths relative to the config file ``source``; also return problems."""
    connection, problems = resolve_influx_located(config, source)
    return connection, [f"storage.influx.{'.'.join(path)}: {message}" for path, message in problems]


def resolve_influx_located(config: InfluxConfig, source: Path) -> tuple[InfluxConnection, list[Located]]:
    """Like ``resolve_influx``, each problem with its path below ``storage.influx`` (for file:line reports)."""
    from config.load import read_secret  # here, not at the top: config.load imports config.schema, which embeds this

    problems: list[Located] = []

    def secret(field: str, ref: SecretRef | None) -> Secret | None:
        if ref is None:
            return None
        value, message = read_secret(ref, source, 1)
        if message:
            problems.append(((field,), message))
        return Secret(value)

    token, password = secret("token", config.token), secret("password", config.password)
    base = source.parent
    ca_file = base / config.tls.ca_file if config.tls.ca_file else None
    if ca_file is not None and not ca_file.is_file():
        problems.append((("tls", "ca_file"), f"{config.tls.ca_file} does not exist"))
    return InfluxConnection(config, token, config.username, password, ca_file, base / config.spool.path), problems
