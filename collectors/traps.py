"""SNMP trap receiver: every notification becomes one Event at once, and the points it carries Readings.

With ``snmp.py`` the only collector module importing pysnmp. One SnmpEngine of its own, bound to
``traps.listen``; it accepts v1/v2c traps with the communities and SNMPv3 traps (authPriv) with the users
named in ``traps.credentials``; informs are answered. Varbinds are never resolved against a MIB.

    async with TrapReceiver(site, on_readings=writer.write, on_events=store.write_events):
        ...

Both sinks are called synchronously in the event loop, the Event before the Readings: keep them fast
(or let them enqueue).

Sender → device: by source host:port (the simulators send from their agent port), else by host alone
among the site's SNMP devices (narrowed by which profile knows the trap OID when several share a host);
an unknown sender is kept with ``device=None``. The trap OID (snmpTrapOID.0) is named through the
device's profile traps, or any profile's for an unknown sender; an unknown OID keeps the OID as its name.

SNMPv3, authPriv only (lower levels are dropped): a trap's authoritative engine is the SENDER, and USM
keys are localised to its engine id, which the receiver cannot know in advance. Before pysnmp sees a v3
datagram the receiver reads the sender's engine id and user name from the clear-text header and, for a
configured user, registers that user for that engine id (from master keys computed once, so this costs
microseconds). If the datagram then fails
authentication the registration is removed again: only engine ids that proved they know the keys stay,
at most ``max_learned_engines`` of them. Users are also registered for the receiver's own engine id, so
v3 informs (where the receiver is authoritative) work too.

Datagrams that are not SNMP, carry a wrong community, or fail USM checks are dropped and counted in
``stats`` by reason; nothing a sender does raises out of the receiver. Communities and keys are never
logged: events name the credential (v1/v2c) or the USM user (v3).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pyasn1.codec.ber import decoder
from pyasn1.error import PyAsn1Error
from pyasn1.type import univ
from pysnmp.carrier.asyncio.dgram import udp, udp6
from pysnmp.entity import config, engine
from pysnmp.entity.rfc3413 import ntfrcv
from pysnmp.error import PySnmpError
from pysnmp.proto import rfc1902
from pysnmp.proto.api import verdec
from pysnmp.proto.mpmod.rfc3412 import SNMPv3Message
from pysnmp.proto.secmod.rfc3414.service import UsmSecurityParameters

from collectors.codec import decode
from collectors.model import Event, Kind, PointSpec, Quality, Reading, Severity
from collectors.profile import DeviceProfile, TrapSpec, load_profiles
from collectors.snmp import AUTH_PROTOCOLS, PRIV_PROTOCOLS, to_raw
from collectors.udp import bind_udp
from config.load import ResolvedCommunity, ResolvedV3, Site
from config.schema import WEAK_AUTH_PROTOCOLS

log = logging.getLogger(__name__)

SNMP_TRAP_OID = "1.3.6.1.6.3.1.1.4.1.0"  # snmpTrapOID.0 (RFC 3418)
# snmpTrapCommunity.0: pysnmp adds it when it converts an SNMPv1 trap (RFC 3584 §3.1), holding the
# community in clear; events keep that the varbind was there, never its value
SNMP_TRAP_COMMUNITY = "1.3.6.1.6.3.18.1.4.0"
REDACTED = "<redacted>"
USM = 3  # msgSecurityModel of the User-based Security Model
MP_V3 = 3  # messageProcessingModel of SNMPv3
AUTH_PRIV = 3  # securityLevel: facwatch only accepts authenticated and encrypted SNMPv3
MAX_LEARNED_ENGINES = 1024
RESOLVE_TIMEOUT_S = 2.0
VERSIONS = {0: "v1", 1: "v2c", 3: "v3"}
# pysnmp's own drop counters → the reason a datagram was dropped (first match wins)
DROP_COUNTERS = (
    ("__SNMPv2-MIB", "snmpInASNParseErrs", "malformed"),
    ("__SNMPv2-MIB", "snmpInBadVersions", "malformed"),
    ("__SNMPv2-MIB", "snmpInBadCommunityNames", "bad_community"),
    ("__SNMP-USER-BASED-SM-MIB", "usmStatsUnknownUserNames", "unknown_user"),
    ("__SNMP-USER-BASED-SM-MIB", "usmStatsWrongDigests", "auth_failed"),
    ("__SNMP-USER-BASED-SM-MIB", "usmStatsDecryptionErrors", "auth_failed"),
    ("__SNMP-USER-BASED-SM-MIB", "usmStatsUnknownEngineIDs", "unknown_engine"),
    ("__SNMP-USER-BASED-SM-MIB", "usmStatsNotInTimeWindows", "not_in_time_window"),
    ("__SNMP-USER-BASED-SM-MIB", "usmStatsUnsupportedSecLevels", "bad_security_level"),
    ("__SNMP-MPD-MIB", "snmpUnknownPDUHandlers", "not_a_notification"),
)
# SMI class names (first match along the value's class hierarchy) → the profile datatype names
SMI_NAMES = {
    "Counter64": "counter64", "Counter32": "counter32", "Gauge32": "gauge32", "Unsigned32": "unsigned32",
    "TimeTicks": "timeticks", "Integer32": "integer", "Integer": "integer", "IpAddress": "ip_address",
    "Opaque": "opaque", "Bits": "bits", "OctetString": "octet_string", "ObjectIdentifier": "object_identifier",
    "NoSuchObject": "noSuchObject", "NoSuchInstance": "noSuchInstance", "EndOfMibView": "endOfMibView",
    "Null": "null",
}

ReadingSink = Callable[[list[Reading]], None]
EventSink = Callable[[list[Event]], None]


@dataclass
class TrapStats:
    """What the receiver did with the datagrams it got."""

    received: int = 0  # UDP datagrams
    accepted: int = 0  # notifications turned into an Event
    dropped: dict[str, int] = field(default_factory=dict)  # reason → datagrams
    sink_errors: int = 0  # on_events / on_readings raised (the event was still counted as accepted)
    learned_engines: int = 0  # SNMPv3 sender engine ids registered

    @property
    def total_dropped(self) -> int:
        """Datagrams that produced no Event."""
        return sum(self.dropped.values())


@dataclass(frozen=True)
class _V3User:
    """A USM user with its master keys (Ku), so a sender's engine id costs only a key localisation."""

    name: str
    auth_protocol: tuple[int, ...]
    priv_protocol: tuple[int, ...]
    auth_master: Any = field(repr=False)
    priv_master: Any = field(repr=False)


@dataclass(frozen=True)
class _Device:
    """A site SNMP device as the receiver matches senders against it."""

    id: str
    addresses: frozenset[str]  # normalised IPs of its host
    port: int
    profile: DeviceProfile
    points: Mapping[str, PointSpec]  # dotted OID → point


@dataclass(frozen=True)
class _Match:
    device: _Device | None
    how: str | None  # "address" (host and port), "host", or None
    candidates: tuple[str, ...] = ()  # several devices share the host and none is singled out


class TrapReceiver:
    """Listens for SNMP notifications of a site; ``on_events`` gets each one at once (see module doc)."""

    def __init__(self, site: Site, on_readings: ReadingSink, on_events: EventSink, *,
                 clock: Callable[[], float] = time.time, profiles: Mapping[str, DeviceProfile] | None = None,
                 max_learned_engines: int = MAX_LEARNED_ENGINES):
        listener = site.config.traps
        if listener is None:
            raise ValueError("the site has no traps: section")
        self.site = site
        self.host, self.port = _split_host_port(listener.listen)
        self._credentials = _trap_credentials(site, listener.credentials)
        for name, credential in self._credentials.items():
            if isinstance(credential, ResolvedV3) and credential.auth_protocol in WEAK_AUTH_PROTOCOLS:
                log.warning("trap receiver: credential %s uses SHA-1 authentication, waived: %s", name,
                            credential.security_waiver)
        self._on_readings, self._on_events, self._clock = on_readings, on_events, clock
        self._max_learned = max_learned_engines
        others = _shipped_profiles() if profiles is None else profiles
        self._catalog = _trap_catalog([*site.profiles.values(), *others.values()])
        self.stats = TrapStats()
        self._devices: list[_Device] = []
        self._users: dict[bytes, _V3User] = {}
        self._learned: set[tuple[bytes, bytes]] = set()
        self._engine: engine.SnmpEngine | None = None
        self._own_engine_id = b""
        self._receiver: ntfrcv.NotificationReceiver | None = None
        self._socket: socket.socket | None = None
        self._counters: list[tuple[Any, str]] = []
        self._outcome: str | None = None  # what the notification callback made of the current datagram

    # --- lifecycle ---------------------------------------------------------------------------------

    async def __aenter__(self) -> TrapReceiver:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def address(self) -> tuple[str, int]:
        """Where the receiver listens (the real port when ``listen`` asked for port 0)."""
        if self._socket is None:
            return self.host, self.port
        bound = self._socket.getsockname()
        return bound[0], bound[1]

    async def start(self) -> None:
        """Bind the port and start receiving (inside the running event loop)."""
        if self._engine is not None:
            return
        self._devices = await _site_devices(self.site)
        self._socket = bind_udp(self.host, self.port, "trap receiver")
        try:
            # building an engine loads pysnmp's base MIBs and hashing passphrases reads 1 MB each:
            # a worker thread keeps both off the event loop
            eng, users = await asyncio.to_thread(_configured_engine, self._credentials)
            try:
                self._attach(eng)
            except BaseException:
                eng.close_dispatcher()
                raise
        except BaseException:
            self._close_socket()
            raise
        self._users, self._learned = users, set()  # a new engine knows no sender yet
        self.stats.learned_engines = 0
        log.info("trap receiver listening on udp %s:%s (%d communities, %d SNMPv3 users)", *self.address,
                 sum(isinstance(c, ResolvedCommunity) for c in self._credentials.values()), len(users))

    async def stop(self) -> None:
        """Close the socket; datagrams still queued are ignored."""
        eng, self._engine = self._engine, None
        if eng is None:
            return
        if self._receiver is not None:
            self._receiver.close(eng)
        eng.close_dispatcher()
        for _ in range(3):  # transport.close() and the timer task's cancel complete on later iterations
            await asyncio.sleep(0)
        self._close_socket()

    def _attach(self, eng: engine.SnmpEngine) -> None:
        """Serve the bound socket with ``eng`` and put our hook in front of pysnmp's message dispatcher."""
        assert self._socket is not None
        if self._socket.family == socket.AF_INET6:
            config.add_transport(eng, udp6.DOMAIN_NAME, udp6.Udp6Transport().open_server_mode(sock=self._socket))
        else:
            config.add_transport(eng, udp.DOMAIN_NAME, udp.UdpTransport().open_server_mode(sock=self._socket))
        dispatcher = eng.transport_dispatcher
        dispatcher.unregister_recv_callback(None)
        dispatcher.register_recv_callback(self._receive, None)
        self._receiver = ntfrcv.NotificationReceiver(eng, self._on_notification)
        self._counters = _drop_counters(eng)
        self._own_engine_id = bytes(_engine_id(eng))
        self._engine = eng

    def _close_socket(self) -> None:
        sock, self._socket = self._socket, None
        if sock is not None:
            sock.close()

    # --- datagrams ---------------------------------------------------------------------------------

    def _receive(self, dispatcher: Any, domain: tuple[int, ...], address: Any, message: bytes) -> None:
        """Every datagram passes here: learn a v3 sender, let pysnmp check it, count what was dropped."""
        eng = self._engine
        if eng is None:
            return
        self.stats.received += 1
        self._outcome = None
        learned = self._learn_engine(eng, message)
        before = [int(counter.syntax) for counter, _ in self._counters]
        try:
            eng.message_dispatcher.receive_message(eng, domain, address, message)
        except Exception as exc:  # pysnmp lets some garbage escape (pyasn1 TypeError): never stop on it
            log.debug("trap receiver: datagram from %s dropped: %s", _source(address), type(exc).__name__)
            reason = "malformed"
        else:
            reason = self._drop_reason(before)
        if self._outcome != "accepted":
            self._drop(self._outcome or reason)
            if learned is not None:
                self._forget_engine(eng, learned)

    def _drop(self, reason: str) -> None:
        self.stats.dropped[reason] = self.stats.dropped.get(reason, 0) + 1

    def _drop_reason(self, before: Sequence[int]) -> str:
        """Which of pysnmp's drop counters moved while it handled the datagram."""
        for (counter, reason), old in zip(self._counters, before, strict=True):
            if int(counter.syntax) != old:
                return reason
        return "rejected"

    def _learn_engine(self, eng: engine.SnmpEngine, message: bytes) -> tuple[bytes, bytes] | None:
        """Register a configured v3 user for the sender's engine id before pysnmp authenticates the datagram."""
        header = _usm_header(message) if self._users else None
        if header is None:
            return None
        engine_id, user_name = header
        user = self._users.get(user_name)
        if user is None or header in self._learned or engine_id == self._own_engine_id:
            return None
        if not 5 <= len(engine_id) <= 32:
            return None  # RFC 3411 engine ids are 5..32 octets; pysnmp drops the rest
        if len(self._learned) >= self._max_learned:  # bounds the USM table; only proven senders count
            if "too_many_engines" not in self.stats.dropped:
                log.warning("trap receiver: %d SNMPv3 sender engines known; traps from new ones are dropped",
                            len(self._learned))
            self._outcome = "too_many_engines"  # the reason _receive counts, pysnmp will not find the user
            return None
        _add_user(eng, user, engine_id)
        self._learned.add(header)
        self.stats.learned_engines = len(self._learned)
        return header

    def _forget_engine(self, eng: engine.SnmpEngine, header: tuple[bytes, bytes]) -> None:
        """Undo a registration whose datagram did not authenticate (anyone can put any id in a header)."""
        engine_id, user_name = header
        self._learned.discard(header)
        self.stats.learned_engines = len(self._learned)
        try:
            config.delete_v3_user(eng, user_name, securityEngineId=rfc1902.OctetString(engine_id))
        except (PySnmpError, PyAsn1Error) as exc:
            log.debug("trap receiver: could not forget an SNMPv3 engine id: %s", type(exc).__name__)

    # --- notifications -----------------------------------------------------------------------------

    def _on_notification(self, eng: engine.SnmpEngine, state_reference: Any, context_engine_id: Any,
                         context_name: Any, varbinds: Sequence[tuple[Any, Any]], cb_ctx: Any) -> None:
        """Called by pysnmp for an authenticated notification: one Event now, Readings for known points."""
        request = eng.observer.get_execution_context("rfc3412.receiveMessage:request")
        if int(request["messageProcessingModel"]) == MP_V3 and int(request["securityLevel"]) != AUTH_PRIV:
            # pysnmp checks the level only where it is authoritative (informs); for traps a configured
            # user's name alone would do, even unauthenticated (noAuthNoPriv)
            self._outcome = "not_auth_priv"
            return
        ts = self._clock()
        try:
            event, readings = self._decode(request, varbinds, ts)
        except Exception:  # a bug here must cost one notification, not the receiver
            log.exception("trap receiver: a notification from %s could not be decoded",
                          _source(request.get("transportAddress")))
            self._outcome = "error"
            return
        self._outcome = "accepted"
        self.stats.accepted += 1
        self._deliver(self._on_events, [event])
        if readings:
            self._deliver(self._on_readings, readings)

    def _decode(self, request: Mapping[str, Any], varbinds: Sequence[tuple[Any, Any]],
                ts: float) -> tuple[Event, list[Reading]]:
        host, port = _host_port(request["transportAddress"])
        rows = [_varbind_row(oid, value) for oid, value in varbinds]
        trap_oid = next((str(row[2]) for row in rows if row[0] == SNMP_TRAP_OID), None)
        match = self._identify(host, port, trap_oid)
        spec = self._trap_spec(match.device, trap_oid)
        payload: dict[str, object] = {
            "oid": trap_oid, "source": _format_source(host, port),
            "community_or_user": bytes(request["securityName"]).decode(errors="replace"),
            "version": VERSIONS.get(int(request["messageProcessingModel"]), "unknown"),
            "matched_by": match.how, "varbinds": rows,
        }
        if match.candidates:
            payload["candidates"] = list(match.candidates)
        device_id = match.device.id if match.device else None
        name = spec.name if spec else (trap_oid or "unknown")
        event = Event(ts, device_id, "trap", name, spec.severity if spec else Severity.UNKNOWN, payload)
        readings = _readings(match.device, varbinds, ts) if match.device else []
        return event, readings

    def _identify(self, host: str, port: int, trap_oid: str | None) -> _Match:
        """The device that sent from host:port: exact address first, then the host alone."""
        on_host = [device for device in self._devices if host in device.addresses]
        exact = [device for device in on_host if device.port == port]
        if len(exact) == 1:
            return _Match(exact[0], "address")
        if len(on_host) > 1 and trap_oid is not None:  # simulators share 127.0.0.1: who knows this trap?
            knowing = [device for device in on_host if device.profile.trap_by_oid(trap_oid)]
            on_host = knowing or on_host
        if len(on_host) == 1:
            return _Match(on_host[0], "host")
        return _Match(None, None, tuple(device.id for device in on_host))

    def _trap_spec(self, device: _Device | None, trap_oid: str | None) -> TrapSpec | None:
        if trap_oid is None:
            return None
        if device is not None:
            return device.profile.trap_by_oid(trap_oid)
        return self._catalog.get(trap_oid)

    def _deliver(self, sink: Callable[[list[Any]], None], items: list[Any]) -> None:
        """Hand items to a sink; a failing sink is logged, it does not stop the receiver."""
        try:
            sink(items)
        except Exception:
            self.stats.sink_errors += 1
            log.exception("trap receiver: %s failed for %d item(s)", getattr(sink, "__qualname__", "sink"),
                          len(items))


# --- configuration ------------------------------------------------------------------------------------

def _split_host_port(text: str) -> tuple[str, int]:
    """Split ``127.0.0.1:16162`` or ``[::1]:16162`` into (host, port)."""
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def _trap_credentials(site: Site, names: Iterable[str]) -> dict[str, ResolvedCommunity | ResolvedV3]:
    """The named credentials; a name the site does not define is a configuration error."""
    found = {}
    for name in names:
        if name not in site.credentials:
            raise ValueError(f"traps.credentials: no credential {name!r} "
                             f"(defined: {', '.join(sorted(site.credentials)) or 'none'})")
        found[name] = site.credentials[name]
    return found


def _shipped_profiles() -> Mapping[str, DeviceProfile]:
    """Every shipped profile, to name traps of senders that are not devices of the site."""
    try:
        return load_profiles()
    except Exception:  # the site loaded, so its own profiles are good; the others are a bonus
        log.warning("trap receiver: shipped profiles could not be loaded; unknown senders' traps stay unnamed")
        return {}


def _trap_catalog(profiles: Iterable[DeviceProfile]) -> dict[str, TrapSpec]:
    """Trap OID → spec over all profiles (the first profile naming an OID wins)."""
    catalog: dict[str, TrapSpec] = {}
    for profile in profiles:
        for trap in profile.traps:
            catalog.setdefault(trap.oid, trap)
    return catalog


async def _site_devices(site: Site) -> list[_Device]:
    """The site's SNMP devices with their host names resolved (a name that does not resolve matches nothing)."""
    snmp = [device for device in site.devices if site.profile(device).protocol == "snmp"]
    hosts = {device.host for device in snmp}
    resolved = dict(zip(hosts, await asyncio.gather(*(_resolve(host) for host in hosts)), strict=True))
    devices = []
    for device in snmp:
        profile = site.profile(device)
        points = {spec.oid: spec for spec in profile.points if spec.oid is not None}
        devices.append(_Device(device.id, resolved[device.host], device.port, profile, points))
    return devices


async def _resolve(host: str) -> frozenset[str]:
    """The normalised IP addresses of a host (an IP literal is its own answer, without a lookup)."""
    literal = _normal_ip(host)
    if literal is not None:
        return frozenset({literal})
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(loop.getaddrinfo(host, None, type=socket.SOCK_DGRAM), RESOLVE_TIMEOUT_S)
    except (OSError, TimeoutError) as exc:
        log.warning("trap receiver: cannot resolve %s (%s); its traps will not be matched to it",
                    host, type(exc).__name__)
        return frozenset()
    return frozenset(ip for info in infos if (ip := _normal_ip(str(info[4][0]))) is not None)


def _normal_ip(text: str) -> str | None:
    """One spelling per address (IPv4-mapped IPv6 as IPv4, scope ids dropped); None if not an IP."""
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def _configured_engine(credentials: Mapping[str, ResolvedCommunity | ResolvedV3]
                       ) -> tuple[engine.SnmpEngine, dict[bytes, _V3User]]:
    """A new engine accepting the communities and users (runs in a worker thread: no event loop use)."""
    eng = engine.SnmpEngine()
    users: dict[bytes, _V3User] = {}
    for name, credential in credentials.items():
        if isinstance(credential, ResolvedCommunity):
            # securityName = the credential's name: what an Event reports instead of the community
            config.add_v1_system(eng, name, credential.community.reveal())
        elif credential.user.encode() in users:
            log.warning("trap receiver: credential %r repeats SNMPv3 user %r; the first one is used",
                        name, credential.user)
        else:
            user = _master_keys(credential)
            users[user.name.encode()] = user
            _add_user(eng, user, None)  # for informs, where this engine is the authoritative one
    return eng, users


def _master_keys(credential: ResolvedV3) -> _V3User:
    """Hash the passphrases once (RFC 3414 A.2.1); per engine id only the cheap localisation remains."""
    auth, priv = AUTH_PROTOCOLS[credential.auth_protocol], PRIV_PROTOCOLS[credential.priv_protocol]
    auth_master = config.AUTH_SERVICES[auth].hash_passphrase(rfc1902.OctetString(credential.auth_key.reveal()))
    priv_master = config.PRIV_SERVICES[priv].hash_passphrase(auth, rfc1902.OctetString(credential.priv_key.reveal()))
    return _V3User(credential.user, auth, priv, auth_master, priv_master)


def _add_user(eng: engine.SnmpEngine, user: _V3User, engine_id: bytes | None) -> None:
    """Register ``user`` for an engine id (None = this engine's own) from its master keys."""
    config.add_v3_user(eng, user.name, user.auth_protocol, user.auth_master, user.priv_protocol, user.priv_master,
                       securityEngineId=None if engine_id is None else rfc1902.OctetString(engine_id),
                       authKeyType=config.USM_KEY_TYPE_MASTER, privKeyType=config.USM_KEY_TYPE_MASTER)


def _engine_id(eng: engine.SnmpEngine) -> Any:
    (snmp_engine_id,) = eng.get_mib_builder().import_symbols("__SNMP-FRAMEWORK-MIB", "snmpEngineID")
    return snmp_engine_id.syntax


def _drop_counters(eng: engine.SnmpEngine) -> list[tuple[Any, str]]:
    """The pysnmp counter objects behind DROP_COUNTERS, looked up once."""
    builder = eng.get_mib_builder()
    return [(builder.import_symbols(module, symbol)[0], reason) for module, symbol, reason in DROP_COUNTERS]


def _usm_header(message: bytes) -> tuple[bytes, bytes] | None:
    """(msgAuthoritativeEngineID, msgUserName) of an SNMPv3/USM datagram, read without any key; else None."""
    try:
        if int(verdec.decode_message_version(message)) != 3:
            return None
        msg, _ = decoder.decode(message, asn1Spec=SNMPv3Message())
        if int(msg["msgGlobalData"]["msgSecurityModel"]) != USM:
            return None
        params, _ = decoder.decode(bytes(msg["msgSecurityParameters"]), asn1Spec=UsmSecurityParameters())
        return bytes(params["msgAuthoritativeEngineId"]), bytes(params["msgUserName"])
    except (PyAsn1Error, PySnmpError, ValueError, TypeError):
        return None  # pysnmp drops it and counts why


# --- varbinds ----------------------------------------------------------------------------------------

def _varbind_row(oid: Any, value: Any) -> list[object]:
    """[dotted OID, SMI type, value]: integers as int, everything else as text (no MIB lookup)."""
    kind = next((SMI_NAMES[cls.__name__] for cls in type(value).__mro__ if cls.__name__ in SMI_NAMES),
                type(value).__name__)
    if str(oid) == SNMP_TRAP_COMMUNITY:
        shown: object = REDACTED
    elif isinstance(value, univ.Null):
        shown = None
    elif isinstance(value, univ.Integer):
        shown = int(value)
    elif kind == "ip_address" and len(bytes(value)) in (4, 16):  # SMIv1 and SMIv2 have their own class
        shown = str(ipaddress.ip_address(bytes(value)))
    elif isinstance(value, univ.ObjectIdentifier):
        shown = value.prettyPrint()
    elif isinstance(value, univ.OctetString):
        shown = _octets(bytes(value))
    else:
        shown = value.prettyPrint()
    return [str(oid), kind, shown]


def _octets(data: bytes) -> str:
    """Printable UTF-8 as text, anything else (MAC addresses, binary) as 0x-hex."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return "0x" + data.hex()
    printable = all(ch.isprintable() or ch in "\t\r\n" for ch in text)
    return text if printable else "0x" + data.hex()


def _readings(device: _Device, varbinds: Sequence[tuple[Any, Any]], ts: float) -> list[Reading]:
    """Decoded Readings for the varbinds that are points of the device's profile."""
    readings = []
    for oid, value in varbinds:
        spec = device.points.get(str(oid))
        if spec is not None:
            readings.append(_reading(device.id, spec, value, ts))
    return readings


def _reading(device_id: str, spec: PointSpec, value: Any, ts: float) -> Reading:
    raw = to_raw(value)
    if isinstance(raw, str) and spec.kind is not Kind.TEXT:  # the sender's type is not what the MIB says
        text = f"expected a number, got {type(value).__name__}"
        return Reading(device_id, spec.name, ts, None, Quality.INVALID, text)
    number, quality, text = decode(spec, raw)
    return Reading(device_id, spec.name, ts, number, quality, text)


def _host_port(address: Any) -> tuple[str, int]:
    host = str(address[0])
    return _normal_ip(host) or host, int(address[1])


def _format_source(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _source(address: Any) -> str:
    try:
        return _format_source(*_host_port(address))
    except (TypeError, ValueError, IndexError):
        return "?"
