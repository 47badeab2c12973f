"""The site configuration schema: strict (unknown keys are errors) and frozen.

A site file says which devices THIS site has, where they are and how to reach them; device types
live in ``collectors/profiles``. Secrets are never written inline: a credential names an
environment variable or a file.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SLUG = r"^[a-z0-9][a-z0-9-]{0,63}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class SecretRef(_Strict):
    """Where a secret comes from: ``{env: VARIABLE}`` or ``{file: PATH}`` (relative to the config file)."""

    env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    file: str | None = Field(default=None, min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _never_inline(cls, value: Any) -> Any:
        if isinstance(value, str | int | float):
            raise ValueError("secrets are never written inline; use {env: VARIABLE} or {file: PATH}")
        return value

    @model_validator(mode="after")
    def _exactly_one_source(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of env or file")
        return self


class SnmpV3Credential(_Strict):
    """SNMPv3 USM user; facwatch only speaks authPriv (RFC 3414 auth + RFC 3826 AES privacy)."""

    type: Literal["snmp_v3"]
    user: str = Field(min_length=1, max_length=32)
    # MD5 and DES are not offered: both are broken, and pysnmp would fall back to them silently
    auth_protocol: Literal["sha", "sha224", "sha256", "sha384", "sha512"]
    auth_key: SecretRef
    priv_protocol: Literal["aes128", "aes192", "aes256"]
    priv_key: SecretRef


class SnmpCommunityCredential(_Strict):
    """SNMP v2c community: clear text on the wire, so it must be marked insecure explicitly."""

    type: Literal["snmp_community"]
    community: SecretRef
    insecure: bool = False


Credential = Annotated[SnmpV3Credential | SnmpCommunityCredential, Field(discriminator="type")]


class SiteInfo(_Strict):
    """Identity of the site."""

    id: str = Field(pattern=SLUG)
    name: str = Field(min_length=1)


class Room(_Strict):
    """A room (data hall, plant room) devices belong to."""

    id: str = Field(pattern=SLUG)
    name: str = Field(min_length=1)


class SnmpOptions(_Strict):
    """SNMP polling options; the defaults bound a dead device to timeout × (retries + 1)."""

    version: Literal["2c", "3"] = "3"
    timeout_s: float = Field(default=1.0, gt=0, le=30)
    retries: int = Field(default=1, ge=0, le=5)
    max_oids_per_request: int = Field(default=24, ge=1, le=128)


class ModbusOptions(_Strict):
    """Modbus TCP polling options."""

    unit_id: int | None = Field(default=None, ge=0, le=255)
    timeout_s: float = Field(default=1.0, gt=0, le=30)
    retries: int = Field(default=1, ge=0, le=5)


class DeviceSimulation(_Strict):
    """Physics parameters for the simulator standing in for this device (demo and tests only)."""

    temperature_c: float = Field(default=21.0, ge=-40, le=80)
    humidity_pct: float = Field(default=45.0, ge=0, le=100)
    noise: float = Field(default=1.0, ge=0, le=10)
    rated_power_w: float = Field(default=10_000, gt=0)
    load_fraction: float = Field(default=0.45, ge=0, le=1.5)
    runtime_full_load_min: float = Field(default=12.0, gt=0)
    peukert_exponent: float = Field(default=1.2, ge=1.0, le=1.6)


class Device(_Strict):
    """One physical device of the site."""

    id: str = Field(pattern=SLUG)
    name: str = ""
    device_class: str = Field(alias="class", pattern=r"^[a-z][a-z0-9_]*$")
    profile: str
    room: str
    host: str = Field(min_length=1, max_length=253, pattern=r"^[A-Za-z0-9.:_-]+$")
    port: int = Field(ge=1, le=65535)
    credential: str | None = None
    snmp: SnmpOptions | None = None
    modbus: ModbusOptions | None = None
    poll_interval_s: float = Field(default=10.0, ge=0.5, le=3600)
    simulation: DeviceSimulation = DeviceSimulation()

    @field_validator("poll_interval_s")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be a finite number of seconds")
        return value

    @property
    def label(self) -> str:
        """The name operators see: the configured name, else the id."""
        return self.name or self.id


class Storage(_Strict):
    """The embedded store."""

    path: str = "var/facwatch.db"  # relative to the config file
    retention_days: float = Field(default=400, gt=0, le=36500)


class Dashboard(_Strict):
    """Where the dashboard listens."""

    host: str = "127.0.0.1"
    port: int = Field(default=8050, ge=1, le=65535)
    refresh_s: float = Field(default=2.0, ge=0.5, le=300)


class Simulation(_Strict):
    """What the site simulator accepts (demo and tests)."""

    snmp_credentials: list[str] = []


class SiteConfig(_Strict):
    """A whole site file."""

    site: SiteInfo
    rooms: list[Room] = Field(min_length=1)
    credentials: dict[str, Credential] = {}
    devices: list[Device] = []
    storage: Storage = Storage()
    dashboard: Dashboard = Dashboard()
    simulation: Simulation = Simulation()
