"""Load a site file: parse, validate, cross-check against the profiles, resolve secrets — or refuse.

Nothing starts on a config with a problem, and every problem is listed at once with file:line and
the path inside the document (``facwatch check`` prints them).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from collectors.profile import DeviceProfile, load_profiles
from config.schema import Device, SecretRef, SiteConfig, SnmpCommunityCredential, SnmpV3Credential
from config.secret import Secret
from config.yamlfile import ConfigError, Problem, YamlDocument, load_yaml, validate

MIN_SNMP_KEY_LENGTH = 8  # RFC 3414 §11.2: USM passphrases shorter than 8 octets are refused


@dataclass(frozen=True, slots=True)
class ResolvedV3:
    """An SNMPv3 credential with its keys read."""

    user: str
    auth_protocol: str
    auth_key: Secret
    priv_protocol: str
    priv_key: Secret


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

    def credential(self, name: str | None) -> ResolvedCredential | None:
        """A resolved credential by name (None for devices that need none)."""
        return self.credentials[name] if name is not None else None

    def storage_path(self) -> Path:
        """The SQLite file, relative paths taken from the config file's folder."""
        return _relative_to(self.source, self.config.storage.path).resolve()


def load_site(path: str | Path, profiles: Mapping[str, DeviceProfile] | None = None) -> Site:
    """Load and fully validate a site file; raise ConfigError listing every problem."""
    source = Path(path).resolve()
    doc = load_yaml(source)
    profiles = load_profiles() if profiles is None else profiles
    config = validate(SiteConfig, doc)
    problems = list(_cross_check(config, doc, profiles))
    credentials, secret_problems = _resolve_credentials(config, doc, source)
    problems += secret_problems
    if problems:
        raise ConfigError(problems)
    return Site(config, {d.profile: profiles[d.profile] for d in config.devices}, credentials, source)


def _cross_check(config: SiteConfig, doc: YamlDocument, profiles: Mapping[str, DeviceProfile]) -> Iterator[Problem]:
    yield from _duplicates(doc, "rooms", [r.id for r in config.rooms])
    yield from _duplicates(doc, "devices", [d.id for d in config.devices])
    room_ids = {r.id for r in config.rooms}
    endpoints: dict[tuple[str, int, int | None], str] = {}
    for index, device in enumerate(config.devices):
        loc = ("devices", index)
        if device.room not in room_ids:
            yield doc.problem((*loc, "room"), f"no room {device.room!r} (rooms: {', '.join(sorted(room_ids))})")
        profile = profiles.get(device.profile)
        if profile is None:
            known = ", ".join(sorted(profiles))
            yield doc.problem((*loc, "profile"), f"unknown profile {device.profile!r}; known: {known}")
            continue
        yield from (doc.problem((*loc, key), msg) for key, msg in _device_problems(device, profile, config))
        key = (device.host, device.port, _unit_id(device, profile))
        if key in endpoints:
            yield doc.problem((*loc, "port"), f"{device.host}:{device.port} is already device {endpoints[key]!r}")
        endpoints[key] = device.id
    for index, name in enumerate(config.simulation.snmp_credentials):
        if not isinstance(config.credentials.get(name), SnmpV3Credential | SnmpCommunityCredential):
            yield doc.problem(("simulation", "snmp_credentials", index), f"no SNMP credential {name!r}")


def _duplicates(doc: YamlDocument, section: str, ids: list[str]) -> Iterator[Problem]:
    seen: set[str] = set()
    for index, item_id in enumerate(ids):
        if item_id in seen:
            yield doc.problem((section, index, "id"), f"duplicate id {item_id!r}")
        seen.add(item_id)


def _unit_id(device: Device, profile: DeviceProfile) -> int | None:
    if profile.protocol != "modbus":
        return None
    configured = device.modbus.unit_id if device.modbus else None
    return configured if configured is not None else profile.modbus.default_unit_id  # type: ignore[union-attr]


def _device_problems(device: Device, profile: DeviceProfile, config: SiteConfig) -> Iterator[tuple[str, str]]:
    """(key, message) for a device that does not fit its profile or its credential."""
    if device.device_class != profile.device_class:
        yield "class", f"profile {profile.id} is for class {profile.device_class!r}, not {device.device_class!r}"
    if profile.protocol == "snmp":
        yield from _snmp_device_problems(device, config)
    else:
        if device.snmp is not None:
            yield "snmp", f"{profile.id} is a Modbus profile; snmp options do not apply"
        if device.credential is not None:
            yield "credential", "Modbus TCP devices take no credential"


def _snmp_device_problems(device: Device, config: SiteConfig) -> Iterator[tuple[str, str]]:
    if device.modbus is not None:
        yield "modbus", "this is an SNMP profile; modbus options do not apply"
    if device.credential is None:
        yield "credential", "SNMP devices need a credential (an snmp_v3 user, or an insecure snmp_community)"
        return
    credential = config.credentials.get(device.credential)
    version = device.snmp.version if device.snmp else "3"
    if credential is None:
        yield "credential", f"no credential {device.credential!r} (defined: {', '.join(sorted(config.credentials))})"
    elif version == "3" and not isinstance(credential, SnmpV3Credential):
        yield "credential", f"{device.credential!r} is not an snmp_v3 credential (snmp.version is 3)"
    elif version == "2c" and not isinstance(credential, SnmpCommunityCredential):
        yield "credential", f"{device.credential!r} is not an snmp_community credential (snmp.version is 2c)"
    elif isinstance(credential, SnmpCommunityCredential) and not credential.insecure:
        yield "credential", (f"{device.credential!r} is SNMP v2c: the community travels in clear text; "
                             "use snmp_v3, or set insecure: true on the credential to accept that")


def _resolve_credentials(config: SiteConfig, doc: YamlDocument, source: Path) -> tuple[dict, list[Problem]]:
    resolved: dict[str, ResolvedCredential] = {}
    problems: list[Problem] = []

    def read(name: str, field: str, ref: SecretRef, minimum: int = 1) -> Secret:
        value, message = _read_secret(ref, source, minimum)
        if message:
            problems.append(doc.problem(("credentials", name, field), message))
        return Secret(value)

    for name, credential in config.credentials.items():
        if isinstance(credential, SnmpV3Credential):
            resolved[name] = ResolvedV3(
                credential.user, credential.auth_protocol,
                read(name, "auth_key", credential.auth_key, MIN_SNMP_KEY_LENGTH),
                credential.priv_protocol, read(name, "priv_key", credential.priv_key, MIN_SNMP_KEY_LENGTH))
        else:
            resolved[name] = ResolvedCommunity(read(name, "community", credential.community))
    return resolved, problems


def _read_secret(ref: SecretRef, source: Path, minimum: int) -> tuple[str, str | None]:
    """The secret's value and, if it cannot be used, why (the message never contains the value)."""
    if ref.env is not None:
        value = os.environ.get(ref.env)
        if value is None:
            return "", f"environment variable {ref.env} is not set"
        where = f"environment variable {ref.env}"
    else:
        path = _relative_to(source, ref.file or "")
        try:
            value = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            return "", f"cannot read secret file {path}: {exc.strerror}"
        where = f"secret file {path}"
    if len(value) < minimum:
        return value, f"{where} holds a key shorter than {minimum} characters"
    return value, None


def _relative_to(source: Path, path: str) -> Path:
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else source.parent / candidate
