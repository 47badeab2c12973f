"""The site configuration schema: strict (unknown keys are errors) and frozen.

A site file says which devices THIS site has, where they are and how to reach them; device types
live in ``collectors/profiles``. Secrets are never written inline: a credential names an
environment variable or a file. Messages are written for the operator editing the YAML, and never
quote the value they reject (it may be a secret in the wrong place).
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, StrictBool, ValidationInfo, field_validator, model_validator

# The shared field types live in config.fields (a leaf module, so storage.influx_config can use them
# and still be embedded here); re-exported for the modules that import them from config.schema.
from config.fields import (  # noqa: F401
    SLUG,
    EnvName,
    HostName,
    HostPort,
    Name,
    Port,
    Seconds,
    SecretRef,
    Slug,
    _bounds,
    _not_blank,
    _num,
    _number,
    _Strict,
    _text,
)
from storage.influx_config import InfluxConfig

AUTH_PROTOCOLS = ("sha", "sha224", "sha256", "sha384", "sha512")
PRIV_PROTOCOLS = ("aes128", "aes192", "aes256")

ClassName = _text(r"^[a-z][a-z0-9_]*$", "must be a lower-case word such as ups or thsensor")
Retries = _number(ge=0, le=5, integer=True)
UnitId = _number(ge=0, le=255, integer=True)
OidsPerRequest = _number(ge=1, le=128, integer=True)
PollInterval = _number(ge=0.5, le=3600, unit="seconds")
RefreshInterval = _number(ge=0.5, le=300, unit="seconds")
RetentionDays = _number(gt=0, le=36500, unit="days")
Celsius = _number(ge=-40, le=80)
Percent = _number(ge=0, le=100)
Noise = _number(ge=0, le=10)
Watts = _number(gt=0, le=10_000_000)
LoadFraction = _number(ge=0, le=1.5)
Minutes = _number(gt=0, le=10_000, unit="minutes")
PeukertExponent = _number(ge=1.0, le=1.6)
Kilowatts = _number(gt=0, le=100_000, unit="kW")
Litres = _number(gt=0, le=10_000_000, unit="litres")
SimSeconds = _number(ge=0, le=86_400, unit="seconds")
LitresPerKwh = _number(gt=0, le=1, unit="L/kWh")
TimeScale = _number(ge=1, le=10_000)
Zone = _number(ge=1, le=200, integer=True)
LatencyMs = _number(ge=0, le=10_000, unit="milliseconds")


_AUTH_PRIV = "facwatch only speaks authPriv"
_UNWAIVABLE = "(a security_waiver cannot allow this)"
# SHA-1 (usmHMACSHAAuthProtocol, RFC 3414) is below the SHA-2 (RFC 7860) that facwatch asks for, but
# HMAC-SHA-1-96 is not broken as a MAC (HMAC does not rest on collision resistance; NIST SP 800-131A
# still allows HMAC-SHA-1) and many UPS and PDU network cards offer nothing better (e.g. APC NMC2:
# MD5 or SHA-1). So SHA-1 is accepted only with a ``security_waiver`` that says why (issue 7); the
# collector logs it at every start. MD5, DES, authNoPriv and noAuthNoPriv cannot be waived.
WEAK_AUTH_PROTOCOLS = frozenset({"sha"})
WAIVER_MIN_LENGTH = 10  # a reason, not "ok" or "legacy"


class SnmpV3Credential(_Strict):
    """SNMPv3 USM user; facwatch only speaks authPriv (RFC 3414 auth + RFC 3826 AES privacy).

    Every field is required, but missing ones are validated (``validate_default``) so that the
    message can say why: pysnmp's own defaults are MD5 and DES. MD5, DES, authNoPriv and noAuthNoPriv
    are never accepted; SHA-1 only with a ``security_waiver`` that says why.

    Example::

        ups-v3:
          type: snmp_v3
          user: facwatch
          auth_protocol: sha256
          auth_key: {file: secrets/ups-auth}
          priv_protocol: aes128
          priv_key: {env: FACWATCH_UPS_PRIV}
    """

    type: Literal["snmp_v3"]
    user: str = Field(min_length=1, max_length=32)
    auth_protocol: Literal["sha", "sha224", "sha256", "sha384", "sha512"] = Field(None, validate_default=True)
    auth_key: SecretRef = Field(None, validate_default=True)
    priv_protocol: Literal["aes128", "aes192", "aes256"] = Field(None, validate_default=True)
    priv_key: SecretRef = Field(None, validate_default=True)
    # why this device may use SHA-1; logged at every start
    security_waiver: Name | None = Field(None, validate_default=True)

    @field_validator("auth_protocol", mode="before")
    @classmethod
    def _strong_auth(cls, value: Any) -> Any:
        if value is None:
            raise ValueError(f"SNMPv3 needs auth_protocol ({_AUTH_PRIV}); use sha256")
        text = str(value).lower()
        if "md5" in text:
            raise ValueError("MD5 is broken and never accepted, not even with a security_waiver; use sha256")
        if text in ("none", "noauth", "false"):
            raise ValueError(f"SNMPv3 without authentication is not accepted ({_AUTH_PRIV}); use sha256 {_UNWAIVABLE}")
        return value

    @field_validator("priv_protocol", mode="before")
    @classmethod
    def _strong_priv(cls, value: Any) -> Any:
        if value is None:
            raise ValueError(f"SNMPv3 needs priv_protocol ({_AUTH_PRIV}); use aes128")
        text = str(value).lower()
        if "des" in text:  # des, 3des, des3, usmDESPrivProtocol
            raise ValueError("DES is broken and never accepted, not even with a security_waiver; use aes128")
        if text in ("none", "nopriv", "false"):
            raise ValueError(f"SNMPv3 without privacy is not accepted ({_AUTH_PRIV}); use aes128 {_UNWAIVABLE}")
        return value

    @field_validator("auth_key", "priv_key", mode="before")
    @classmethod
    def _keys_given(cls, value: Any) -> Any:
        if value is None:
            raise ValueError(f"SNMPv3 needs auth_key and priv_key ({_AUTH_PRIV})")
        return value

    @field_validator("security_waiver")
    @classmethod
    def _waiver_matches_protocols(cls, value: str | None, info: ValidationInfo) -> str | None:
        auth = info.data.get("auth_protocol")  # absent if itself invalid: that error is enough
        weak = auth in WEAK_AUTH_PROTOCOLS
        if value is None:
            if weak:
                raise ValueError("SHA-1 (sha) is below the SHA-2 facwatch requires: use sha256 (SHA-2), or add "
                                 "security_waiver: \"<why this device cannot>\"")
            return value
        if len(value.strip()) < WAIVER_MIN_LENGTH:
            raise ValueError(f"a security_waiver says why, in at least {WAIVER_MIN_LENGTH} characters "
                             "(e.g. \"APC NMC2 firmware 6.x offers MD5 or SHA-1 only\")")
        if auth is not None and not weak:
            raise ValueError("security_waiver on a credential that needs none (it uses SHA-2 and AES): remove it")
        return value


class SnmpCommunityCredential(_Strict):
    """SNMP v2c community: clear text on the wire, so it must be marked insecure explicitly."""

    type: Literal["snmp_community"]
    community: SecretRef
    insecure: StrictBool = False  # exactly true, not "yes" or 1: this flag waives a security rule


Credential = Annotated[SnmpV3Credential | SnmpCommunityCredential, Field(discriminator="type")]


class SiteInfo(_Strict):
    """Identity of the site."""

    id: Slug
    name: Name


class Room(_Strict):
    """A room (data hall, plant room) devices belong to."""

    id: Slug
    name: Name


class SnmpOptions(_Strict):
    """SNMP polling options; the defaults bound a dead device to timeout × (retries + 1)."""

    version: Literal["2c", "3"] = "3"
    timeout_s: Seconds = 1.0
    retries: Retries = 1
    max_oids_per_request: OidsPerRequest = 24

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, value: Any) -> Any:
        # `version: 3` unquoted is an int in YAML; it can only mean "3"
        return "3" if value == 3 and not isinstance(value, bool) else value


class ModbusTlsSimulator(_Strict):
    """The simulated device's own certificate and key (demo and tests), issued by the same ``ca_file``."""

    cert_file: Name  # relative to the config file
    key_file: Name


class ModbusTls(_Strict):
    """Modbus/TCP Security (TLS 1.2+, normally TCP 802): the device is verified, facwatch presents a certificate.

    Verification cannot be turned off. Paths are relative to the config file.

    Example::

        modbus:
          tls:
            ca_file: pki/modbus-ca.pem            # the CA that issued the device certificates
            cert_file: pki/facwatch.pem           # facwatch's client certificate (the server checks it)
            key_file: pki/facwatch.key
            key_password: {env: FACWATCH_MODBUS_KEY_PASSWORD}   # only for an encrypted key
            server_name: ats-a.dc1.example        # the name in the device certificate; default: host
    """

    ca_file: Name
    cert_file: Name | None = None
    key_file: Name | None = None
    key_password: SecretRef | None = None
    server_name: HostName | None = None
    simulator: ModbusTlsSimulator | None = None

    @model_validator(mode="before")
    @classmethod
    def _always_verified(cls, value: Any) -> Any:
        if isinstance(value, dict) and any(key in value for key in ("verify", "insecure", "check_hostname")):
            raise ValueError("Modbus/TCP Security always verifies the device certificate and name; "
                             "verification cannot be turned off (remove verify/insecure/check_hostname)")
        return value

    @model_validator(mode="after")
    def _cert_with_key(self) -> ModbusTls:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("give cert_file and key_file together (facwatch's certificate and its key), or neither")
        if self.key_password is not None and self.key_file is None:
            raise ValueError("key_password needs key_file")
        return self


class ModbusOptions(_Strict):
    """Modbus TCP polling options."""

    unit_id: UnitId | None = None
    timeout_s: Seconds = 1.0
    retries: Retries = 1
    tls: ModbusTls | None = None  # Modbus/TCP Security; absent: plain Modbus TCP


class DeviceSimulation(_Strict):
    """Physics parameters for the simulator standing in for this device (demo and tests only)."""

    temperature_c: Celsius = 21.0
    humidity_pct: Percent = 45.0
    noise: Noise = 1.0
    rated_power_w: Watts = 10_000
    load_fraction: LoadFraction = 0.45
    runtime_full_load_min: Minutes = 12.0
    peukert_exponent: PeukertExponent = 1.2
    # generator (REFERENCE.md §7.1–7.2): NFPA 110 Type 10 starts within 10 s; SFC ≈ 0.27 L/kWh at full load
    rated_kw: Kilowatts = 500.0
    start_time_s: SimSeconds = 8.0
    tank_litres: Litres = 25_000.0
    fuel_pct: Percent = 85.0
    sfc_l_per_kwh: LitresPerKwh = 0.27
    cooldown_s: SimSeconds = 300.0
    # ATS: wait for stable generator output before transfer; wait for stable mains before retransfer
    transfer_delay_s: SimSeconds = 2.0
    retransfer_delay_s: SimSeconds = 300.0
    # CRAC: sensible cooling capacity and supply-air set point
    cooling_kw: Kilowatts = 120.0
    setpoint_c: Celsius = 18.0
    # fire / suppression: the detection zones this device watches (cross-zoned pairs)
    zones: list[Zone] = Field(default_factory=list)
    # answer each request after a delay drawn uniformly from [low, high] ms (real cards take 50-200 ms)
    latency_ms: tuple[LatencyMs, LatencyMs] | None = None

    @field_validator("latency_ms")
    @classmethod
    def _latency_range(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None and value[0] > value[1]:
            raise ValueError("give [low, high] with low at most high, e.g. [50, 200]")
        return value


class Device(_Strict):
    """One physical device of the site.

    Example::

        - id: dh1-ups-a
          class: ups
          profile: ups/ietf_rfc1628
          room: dh1
          host: 10.0.20.11
          port: 161
          credential: ups-v3
    """

    id: Slug
    name: str = ""
    device_class: ClassName = Field(alias="class")
    profile: Name
    room: Name
    host: HostName
    port: Port
    credential: Name | None = None
    snmp: SnmpOptions | None = None
    modbus: ModbusOptions | None = None
    poll_interval_s: PollInterval = 10.0
    simulation: DeviceSimulation = DeviceSimulation()

    @property
    def label(self) -> str:
        """The name operators see: the configured name, else the id."""
        return self.name or self.id


class Storage(_Strict):
    """The embedded store, and optionally InfluxDB for readings (scale-out, DESIGN.md §3.4)."""

    path: Name = "var/facwatch.db"  # relative to the config file; with influx: events, alerts, audit log
    retention_days: RetentionDays = 400
    influx: InfluxConfig | None = None


def _ip_network(value: str) -> str:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError("must be an IP address or a CIDR network, e.g. 127.0.0.1 or 10.1.0.0/24") from None
    return value


IpNetwork = Annotated[str, AfterValidator(_ip_network)]
HeaderName = _text(r"^[A-Za-z0-9-]{1,64}$",
                   "must be an HTTP header name (letters, digits and -), e.g. X-Forwarded-User")


class DashboardTls(_Strict):
    """HTTPS served by facwatch itself (docs/deploy.md, "Direct HTTPS"); paths relative to the config file.

    Example::

        tls:
          cert_file: certs/facwatch.pem      # PEM: the server certificate, then any intermediates
          key_file: certs/facwatch-key.pem   # PEM private key, readable by facwatch only
          key_password: {env: FACWATCH_TLS_KEY_PASSWORD}   # only for an encrypted key
    """

    cert_file: Name
    key_file: Name
    key_password: SecretRef | None = None


class Dashboard(_Strict):
    """Where the dashboard listens, and how it is reached: directly over HTTPS, or behind a TLS proxy."""

    host: HostName = "127.0.0.1"
    port: Port = 8050
    refresh_s: RefreshInterval = 2.0
    # reverse proxies whose X-Forwarded-For / proxy_user_header are believed (docs/deploy.md)
    trusted_proxies: list[IpNetwork] = Field(default_factory=list)
    proxy_user_header: HeaderName = "X-Forwarded-User"
    tls: DashboardTls | None = None
    # None: Secure cookies unless plain HTTP on loopback; false: accept clear-text logins (a waiver)
    secure_cookies: StrictBool | None = None

    @field_validator("secure_cookies")
    @classmethod
    def _secure_with_tls(cls, value: bool | None, info: ValidationInfo) -> bool | None:
        if value is False and info.data.get("tls") is not None:
            raise ValueError("with tls, session cookies are always Secure; remove secure_cookies: false")
        return value


class Simulation(_Strict):
    """What the site simulator accepts and does (demo, tests, drills)."""

    snmp_credentials: list[Name] = Field(default_factory=list)
    # simulated seconds per wall second: scenarios and drills run accelerated (×N)
    time_scale: TimeScale = 1.0
    # where simulated agents send SNMP traps ("host:port"), e.g. facwatch's own trap listener
    trap_targets: list[HostPort] = Field(default_factory=list)
    # IT load of each room in kW (rooms not listed share the UPS output evenly)
    room_it_load_kw: dict[Slug, Kilowatts] = Field(default_factory=dict)
    # loopback HTTP endpoint of `facwatch simulate` / `demo` for starting scenarios at runtime
    control: HostPort = "127.0.0.1:16099"


class TrapListener(_Strict):
    """facwatch's SNMP trap receiver (v2c communities and v3 users from ``credentials``)."""

    listen: HostPort = "127.0.0.1:16162"
    credentials: list[Name] = Field(default_factory=list)


def _some_rooms(rooms: list[Room]) -> list[Room]:
    if not rooms:
        raise ValueError("a site needs at least one room")
    return rooms


class SiteConfig(_Strict):
    """A whole site file."""

    site: SiteInfo
    rooms: Annotated[list[Room], AfterValidator(_some_rooms)]
    credentials: dict[Name, Credential] = Field(default_factory=dict)
    devices: list[Device] = Field(default_factory=list)
    storage: Storage = Storage()
    dashboard: Dashboard = Dashboard()
    simulation: Simulation = Simulation()
    traps: TrapListener | None = None
