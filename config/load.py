"""Load a site file: parse, validate, cross-check against the profiles, resolve secrets — or refuse.

Nothing starts on a config with a problem, and every problem is listed at once with file:line and
the path inside the document (``facwatch check`` prints them).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from collectors.modbus_tls import ModbusTlsFiles
from collectors.profile import DeviceProfile, load_profiles
from config.modbus_tls import resolve_modbus_tls
from config.schema import (
    Credential,
    DashboardTls,
    Device,
    SecretRef,
    SiteConfig,
    SnmpCommunityCredential,
    SnmpV3Credential,
)
from config.secret import Secret
from config.tls_files import TlsFiles, resolve_dashboard_tls
from config.yamlfile import ConfigError, Problem, YamlDocument, check, line_of, load_yaml
from storage.influx_config import InfluxConfig, InfluxConnection, resolve_influx_located

MIN_SNMP_KEY_LENGTH = 8  # RFC 3414 §11.2: USM passphrases shorter than 8 octets are refused
MAX_SECRET_BYTES = 4096  # a key file bigger than this is the wrong file (or /dev/zero)
_CREDENTIAL: TypeAdapter = TypeAdapter(Credential)
_DEVICE: TypeAdapter = TypeAdapter(Device)
_INFLUX: TypeAdapter = TypeAdapter(InfluxConfig)
log = logging.getLogger(__name__)
_DASHBOARD_TLS: TypeAdapter = TypeAdapter(DashboardTls)


@dataclass(frozen=True, slots=True)
class ResolvedV3:
    """An SNMPv3 credential with its keys read."""

    user: str
    auth_protocol: str
    auth_key: Secret
    priv_protocol: str
    priv_key: Secret
    security_waiver: str | None = None  # why a weaker protocol (SHA-1) is accepted; logged at start


@dataclass(frozen=True, slots=True)
class ResolvedCommunity:
    """A v2c community with its value read."""

    community: Secret


ResolvedCredential = ResolvedV3 | ResolvedCommunity


@dataclass(frozen=True)
class Site:
    """A validated site: its config, the profiles its devices use and the resolved credentials."""

    config: SiteConfig
    profiles: Mapping[str, DeviceProfile]
    credentials: Mapping[str, ResolvedCredential]
    source: Path
    influx: InfluxConnection | None = None  # storage.influx with its secrets read, if configured
    dashboard_tls: TlsFiles | None = None  # dashboard.tls checked and its key password read, if configured
    modbus_tls: Mapping[str, ModbusTlsFiles] = field(default_factory=dict)  # by device id: modbus.tls resolved
    warnings: tuple[Problem, ...] = ()  # allowed but worth a look (logged at load, listed by facwatch check)

    @property
    def devices(self) -> list[Device]:
        """Every configured device, in file order."""
        return list(self.config.devices)

    def device(self, device_id: str) -> Device:
        """The device with this id; KeyError if none."""
        for device in self.config.devices:
            if device.id == device_id:
                return device
        raise KeyError(device_id)

    def profile(self, device: Device) -> DeviceProfile:
        """The compiled profile of a device."""
        return self.profiles[device.profile]

    def credential_for(self, device: Device) -> ResolvedCredential | ModbusTlsFiles | None:
        """What a device authenticates with: its SNMP credential, or its Modbus/TCP Security files."""
        return self.modbus_tls.get(device.id) or self.credential(device.credential)

    def credential(self, name: str | None) -> ResolvedCredential | None:
        """A resolved credential by name (None for devices that need none)."""
        return self.credentials[name] if name is not None else None

    def storage_path(self) -> Path:
        """The SQLite file, relative paths taken from the config file's folder."""
        return _relative_to(self.source, self.config.storage.path).resolve()


def load_site(path: str | Path, profiles: Mapping[str, DeviceProfile] | None = None) -> Site:
    """Load and fully validate a site file; raise ConfigError listing every problem."""
    return site_from_document(load_yaml(Path(path).resolve()), profiles)


def site_from_document(doc: YamlDocument, profiles: Mapping[str, DeviceProfile] | None = None) -> Site:
    """Validate a parsed site document (secret files are relative to ``doc.file``) or raise ConfigError."""
    source = Path(doc.file).resolve()
    profiles = load_profiles() if profiles is None else profiles
    config, problems = check(SiteConfig, doc)
    # The schema step stops at nothing: cross-checks and secrets still run on every entry that is
    # valid on its own, so the operator sees all problems of the file in one pass.
    parts = _salvage(doc.data)
    problems += _cross_check(parts, doc, profiles)
    credentials, secret_problems = _resolve_credentials(parts.credentials, doc, source)
    problems += secret_problems
    influx, influx_problems = _resolve_influx(doc, source)
    problems += influx_problems
    tls, tls_problems = _resolve_dashboard_tls(doc, source)
    problems += tls_problems
    modbus = [(i, d) for i, d in parts.devices if getattr(profiles.get(d.profile), "protocol", None) == "modbus"]
    modbus_tls, modbus_tls_problems, warnings = resolve_modbus_tls(modbus, doc, source)
    problems += modbus_tls_problems
    if problems or config is None:
        raise ConfigError(problems)
    for warning in warnings:
        log.warning("%s", warning)
    return Site(config, {d.profile: profiles[d.profile] for d in config.devices}, credentials, source, influx, tls,
                modbus_tls=modbus_tls, warnings=tuple(warnings))


@dataclass(frozen=True)
class _Parts:
    """The entries of a site document that are valid on their own, with their positions.

    A reference (room, credential) is only reported as dangling when every possible target's
    name could be read; otherwise a typo in a room would also be blamed on each of its devices.
    """

    raw_devices: list[tuple[int, dict]]
    devices: list[tuple[int, Device]]
    credentials: dict[str, SnmpV3Credential | SnmpCommunityCredential]
    snmp_credentials: list[tuple[int, str]]
    room_ids: frozenset[str] | None
    credential_names: frozenset[str] | None


def _salvage(data: Any) -> _Parts:
    """Validate a raw site document entry by entry, keeping what passes."""
    top = data if isinstance(data, dict) else {}
    devices = _as_list(top.get("devices"))
    credentials = top.get("credentials", {})
    simulation = top.get("simulation")
    simulated = _as_list(simulation.get("snmp_credentials") if isinstance(simulation, dict) else None)
    return _Parts(
        raw_devices=[(index, raw) for index, raw in enumerate(devices) if isinstance(raw, dict)],
        devices=[(index, device) for index, raw in enumerate(devices) if (device := _valid(_DEVICE, raw))],
        credentials=_valid_credentials(credentials),
        snmp_credentials=[(index, name) for index, name in enumerate(simulated) if isinstance(name, str)],
        room_ids=_readable_ids(top.get("rooms", [])),
        credential_names=frozenset(str(k) for k in credentials) if isinstance(credentials, dict) else None,
    )


def _as_list(raw: Any) -> list:
    return raw if isinstance(raw, list) else []


def _valid(adapter: TypeAdapter, raw: Any) -> Any:
    """``raw`` validated, or None if it is not valid on its own (the schema step says why)."""
    try:
        return adapter.validate_python(raw)
    except ValidationError:
        return None


def _valid_credentials(raw: Any) -> dict[str, SnmpV3Credential | SnmpCommunityCredential]:
    if not isinstance(raw, dict):
        return {}
    found = {name: _valid(_CREDENTIAL, value) for name, value in raw.items() if isinstance(name, str)}
    return {name: credential for name, credential in found.items() if credential is not None}


def _readable_ids(raw: Any) -> frozenset[str] | None:
    """Every ``id`` of a list of entries, or None if some entry's id cannot be read."""
    if not isinstance(raw, list):
        return None
    ids = [item.get("id") if isinstance(item, dict) else None for item in raw]
    if not all(isinstance(item_id, str) for item_id in ids):
        return None
    return frozenset(ids)


def _raw_ids(data: Any, section: str) -> list[tuple[int, str]]:
    """(index, id) of the entries of a list section whose id is a string, valid or not."""
    items = data.get(section) if isinstance(data, dict) else None
    if not isinstance(items, list):
        return []
    ids = ((index, item.get("id") if isinstance(item, dict) else None) for index, item in enumerate(items))
    return [(index, item_id) for index, item_id in ids if isinstance(item_id, str)]


def _cross_check(parts: _Parts, doc: YamlDocument, profiles: Mapping[str, DeviceProfile]) -> list[Problem]:
    problems = [*_duplicates(doc, "rooms"), *_duplicates(doc, "devices")]
    problems += _device_checks(parts, doc, profiles)
    for index, name in parts.snmp_credentials:
        if parts.credential_names is not None and name not in parts.credential_names:
            problems.append(doc.problem(("simulation", "snmp_credentials", index), f"no credential {name!r}"))
    return problems


def _duplicates(doc: YamlDocument, section: str) -> Iterator[Problem]:
    seen: dict[str, int] = {}
    for index, item_id in _raw_ids(doc.data, section):
        if item_id in seen:
            first = line_of(doc.nodes, (section, seen[item_id], "id"))
            yield doc.problem((section, index, "id"), f"duplicate id {item_id!r} (first at line {first})")
        seen.setdefault(item_id, index)


def _device_checks(parts: _Parts, doc: YamlDocument, profiles: Mapping[str, DeviceProfile]) -> Iterator[Problem]:
    for index, raw in parts.raw_devices:
        yield from (doc.problem(("devices", index, key), msg) for key, msg in _reference_problems(raw, parts, profiles))
    endpoints: dict[tuple[str, int, int | None], str] = {}
    for index, device in parts.devices:
        loc = ("devices", index)
        profile = profiles.get(device.profile)
        if profile is None:
            continue
        yield from (doc.problem((*loc, key), msg) for key, msg in _device_problems(device, profile, parts))
        unit = _unit_id(device, profile)
        key = (device.host.lower(), device.port, unit)
        if key in endpoints:
            where = f"{device.host}:{device.port}" + (f" unit {unit}" if unit is not None else "")
            yield doc.problem((*loc, "port"), f"{where} is already device {endpoints[key]!r}")
        endpoints.setdefault(key, device.id)


def _reference_problems(raw: dict, parts: _Parts, profiles: Mapping[str, DeviceProfile]) -> Iterator[tuple[str, str]]:
    """Dangling room, profile and credential names; needs only those fields, so runs on broken devices too."""
    room, profile_id, credential = (_name(raw, key) for key in ("room", "profile", "credential"))
    if room is not None and parts.room_ids is not None and room not in parts.room_ids:
        yield "room", f"no room {room!r} (rooms: {', '.join(sorted(parts.room_ids)) or 'none defined'})"
    profile = profiles.get(profile_id) if profile_id is not None else None
    if profile_id is not None and profile is None:
        yield "profile", f"unknown profile {profile_id!r}; {_profile_hint(profile_id, profiles)}"
    modbus = profile is not None and profile.protocol == "modbus"  # reported as "takes no credential" instead
    names = parts.credential_names
    if credential is not None and not modbus and names is not None and credential not in names:
        yield "credential", f"no credential {credential!r} (defined: {', '.join(sorted(names)) or 'none'})"


def _profile_hint(profile_id: str, profiles: Mapping[str, DeviceProfile]) -> str:
    """The profiles of the same class if there are any (the list of all of them grows long), else all."""
    folder = profile_id.split("/")[0] + "/"
    same_class = sorted(p for p in profiles if p.startswith(folder))
    if same_class:
        return f"{folder[:-1]} profiles: {', '.join(same_class)}"
    return f"known: {', '.join(sorted(profiles)) or 'none'}"


def _name(raw: dict, key: str) -> str | None:
    """A reference as written, or None if it is blank or not a string (a schema problem, not reported twice)."""
    value = raw.get(key)
    return value if isinstance(value, str) and value.strip() else None


def _unit_id(device: Device, profile: DeviceProfile) -> int | None:
    if profile.protocol != "modbus":
        return None
    configured = device.modbus.unit_id if device.modbus else None
    default = profile.modbus.default_unit_id if profile.modbus else 1
    return configured if configured is not None else default


def _device_problems(device: Device, profile: DeviceProfile, parts: _Parts) -> Iterator[tuple[str, str]]:
    """(key, message) for a device that does not fit its profile or its credential."""
    if device.device_class != profile.device_class:
        yield "class", f"profile {profile.id} is for class {profile.device_class!r}, not {device.device_class!r}"
    if profile.protocol == "snmp":
        yield from _snmp_device_problems(device, parts)
    else:
        if device.snmp is not None:
            yield "snmp", f"{profile.id} is a Modbus profile; snmp options do not apply"
        if device.credential is not None:
            yield "credential", "Modbus TCP devices take no credential"


def _snmp_device_problems(device: Device, parts: _Parts) -> Iterator[tuple[str, str]]:
    if device.modbus is not None:
        yield "modbus", "this is an SNMP profile; modbus options do not apply"
    if device.credential is None:
        yield "credential", "SNMP devices need a credential (an snmp_v3 user, or an insecure snmp_community)"
        return
    credential = parts.credentials.get(device.credential)
    if credential is None:
        return  # undefined (a reference problem) or itself invalid (a schema problem): already reported
    version = device.snmp.version if device.snmp else "3"
    if version == "3" and not isinstance(credential, SnmpV3Credential):
        yield "credential", f"{device.credential!r} is not an snmp_v3 credential (snmp.version is 3)"
    elif version == "2c" and not isinstance(credential, SnmpCommunityCredential):
        yield "credential", f"{device.credential!r} is not an snmp_community credential (snmp.version is 2c)"
    elif isinstance(credential, SnmpCommunityCredential) and not credential.insecure:
        yield "credential", (f"{device.credential!r} is SNMP v2c: the community travels in clear text; "
                             "use snmp_v3, or set insecure: true on the credential to accept that")


def _resolve_credentials(credentials: Mapping[str, SnmpV3Credential | SnmpCommunityCredential],
                         doc: YamlDocument, source: Path) -> tuple[dict[str, ResolvedCredential], list[Problem]]:
    resolved: dict[str, ResolvedCredential] = {}
    problems: list[Problem] = []

    def read(name: str, field: str, ref: SecretRef, minimum: int = 1) -> Secret:
        value, message = read_secret(ref, source, minimum)
        if message:
            problems.append(doc.problem(("credentials", name, field), message))
        return Secret(value)

    for name, credential in credentials.items():
        if isinstance(credential, SnmpV3Credential):
            resolved[name] = ResolvedV3(
                credential.user, credential.auth_protocol,
                read(name, "auth_key", credential.auth_key, MIN_SNMP_KEY_LENGTH),
                credential.priv_protocol, read(name, "priv_key", credential.priv_key, MIN_SNMP_KEY_LENGTH),
                credential.security_waiver)
        else:
            resolved[name] = ResolvedCommunity(read(name, "community", credential.community))
    return resolved, problems


def _resolve_influx(doc: YamlDocument, source: Path) -> tuple[InfluxConnection | None, list[Problem]]:
    """``storage.influx`` with its secrets read, if the section is valid on its own (else the schema step says why)."""
    storage = doc.data.get("storage") if isinstance(doc.data, dict) else None
    raw = storage.get("influx") if isinstance(storage, dict) else None
    config = _valid(_INFLUX, raw) if raw is not None else None
    if config is None:
        return None, []
    connection, located = resolve_influx_located(config, source)
    return connection, [doc.problem(("storage", "influx", *path), message) for path, message in located]


def _resolve_dashboard_tls(doc: YamlDocument, source: Path) -> tuple[TlsFiles | None, list[Problem]]:
    """``dashboard.tls`` checked (files, password, key matches certificate) if the section is valid on its own."""
    dashboard = doc.data.get("dashboard") if isinstance(doc.data, dict) else None
    raw = dashboard.get("tls") if isinstance(dashboard, dict) else None
    config = _valid(_DASHBOARD_TLS, raw) if raw is not None else None
    if config is None:
        return None, []
    files, located = resolve_dashboard_tls(config, source)
    return files, [doc.problem(("dashboard", "tls", *path), message) for path, message in located]


def read_secret(ref: SecretRef, source: Path, minimum: int) -> tuple[str, str | None]:
    """The secret's value and, if it cannot be used, why (the message never contains the value)."""
    if ref.env is not None:
        value = os.environ.get(ref.env)
        if value is None:
            return "", f"environment variable {ref.env} is not set"
        where = f"environment variable {ref.env}"
    else:
        value, error = _read_secret_file(source, ref.file or "")
        if error:
            return "", error
        where = f"secret file {ref.file}"
    if not value:
        return value, f"{where} is empty"
    if len(value) < minimum:
        return value, f"{where} holds a key shorter than {minimum} characters, which SNMPv3 refuses"
    return value, None


def _read_secret_file(source: Path, name: str) -> tuple[str, str | None]:
    """A secret file's stripped text, or why it cannot be used."""
    try:
        path = _relative_to(source, name)
        with path.open("rb") as handle:
            raw = handle.read(MAX_SECRET_BYTES + 1)
    except OSError as exc:
        return "", f"cannot read secret file {name} ({path}): {exc.strerror}"
    except (ValueError, RuntimeError) as exc:  # a NUL in the path; "~nobody" with no such user
        return "", f"cannot read secret file {name}: {exc}"
    if len(raw) > MAX_SECRET_BYTES:
        return "", f"secret file {name} is larger than {MAX_SECRET_BYTES} bytes; is it the right file?"
    try:
        return raw.decode("utf-8").strip(), None
    except UnicodeDecodeError:
        return "", f"secret file {name} is not UTF-8 text"


def _relative_to(source: Path, path: str) -> Path:
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else source.parent / candidate
