"""A read-only SNMP agent serving one device's profile points (pysnmp 7, asyncio).

One agent = one SnmpEngine on its own UDP port, built inside the running event loop (pysnmp binds
on the loop that exists when the transport is created; LIBRARIES.md §1 pitfall 10). Values are
raw wire values already encoded with ``collectors.codec`` from the SAME profile the collector
decodes with, so both ends agree by construction.

``send_trap`` sends SNMPv2 traps from the agent's own port (source address = the device's address, so a
receiver can tell which device sent it).

Security (LIBRARIES.md §1 pitfalls 8 and 9): the read view is mib-2 + enterprises only, so pysnmp's
own configuration MIBs (SNMP-COMMUNITY-MIB with the community strings, USM, VACM) are never
reachable, and pysnmp's enterprise arc 1.3.6.1.4.1.20408 (PYSNMP-USM-MIB: the v3 passphrases in
clear) is excluded from it. No SET responder is registered, and every group still gets an explicit
write view that contains nothing, because a VACM view with no entries GRANTS access in pysnmp
(lextudio/pysnmp#48).
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

from pyasn1.error import PyAsn1Error
from pysnmp.carrier.asyncio.dgram import udp, udp6
from pysnmp.entity import config, engine
from pysnmp.entity.rfc3413 import cmdrsp, context
from pysnmp.error import PySnmpError
from pysnmp.proto import rfc1902
from pysnmp.proto.api import v2c

from collectors.codec import RawValue
from collectors.profile import DeviceProfile, TrapSpec
from collectors.udp import bind_udp
from config.load import ResolvedCommunity, ResolvedCredential, ResolvedV3

log = logging.getLogger(__name__)

MIB2 = (1, 3, 6, 1, 2, 1)
ENTERPRISES = (1, 3, 6, 1, 4, 1)
READ_VIEW_SUBTREES = (MIB2, ENTERPRISES)
# pysnmp's own enterprise arc: PYSNMP-USM-MIB pysnmpUsmSecretTable holds every v3 user's auth and priv
# passphrases IN CLEAR, and it sits under enterprises. Excluded from every read view (the longer,
# excluded subtree wins over the included enterprises arc; RFC 3415 §5.2.1).
PYSNMP_ENTERPRISE = (1, 3, 6, 1, 4, 1, 20408)
NOTHING = (0, 0)  # zeroDotZero: an OID nothing lives under, for the write/notify views
SYS_OIDS = {  # SNMPv2-MIB system group (RFC 3418)
    "sysDescr": (1, 3, 6, 1, 2, 1, 1, 1),
    "sysObjectID": (1, 3, 6, 1, 2, 1, 1, 2),
    "sysUpTime": (1, 3, 6, 1, 2, 1, 1, 3),
    "sysName": (1, 3, 6, 1, 2, 1, 1, 5),
}
# Sorted after pysnmp's "__SNMPv2-MIB" instances when the MIB index is built (modules are read in
# reverse name order, the last one wins), so our system-group instances replace pysnmp's.
MIB_MODULE = "FACWATCH-SIM-MIB"

# Site-config protocol names → pysnmp USM protocol ids. These pairings interoperate with net-snmp
# 5.9.3 (-a SHA|SHA-224|SHA-256|SHA-384|SHA-512, -x AES|AES-192|AES-256), checked by the tests.
AUTH_PROTOCOLS = {
    "sha": config.USM_AUTH_HMAC96_SHA,
    "sha224": config.USM_AUTH_HMAC128_SHA224,
    "sha256": config.USM_AUTH_HMAC192_SHA256,
    "sha384": config.USM_AUTH_HMAC256_SHA384,
    "sha512": config.USM_AUTH_HMAC384_SHA512,
}
# net-snmp's AES-192/AES-256 localise the key with the Blumenthal draft key extension
# (draft-blumenthal-aes-usm-04); pysnmp's plain USM_PRIV_CFB192/256_AES is the Reeder ("Cisco")
# extension and does not interoperate with net-snmp's -x AES-192/AES-256.
PRIV_PROTOCOLS = {
    "aes128": config.USM_PRIV_CFB128_AES,
    "aes192": config.USM_PRIV_CFB192_AES_BLUMENTHAL,
    "aes256": config.USM_PRIV_CFB256_AES_BLUMENTHAL,
}
SMI_TYPES: dict[str, type] = {
    "integer": rfc1902.Integer32,
    "gauge32": rfc1902.Gauge32,
    "counter32": rfc1902.Counter32,
    "counter64": rfc1902.Counter64,
    "timeticks": rfc1902.TimeTicks,
    "unsigned32": rfc1902.Unsigned32,
    "octet_string": rfc1902.OctetString,
    "object_identifier": rfc1902.ObjectIdentifier,
}
EMPTY_VALUES: dict[str, Any] = {"octet_string": "", "object_identifier": "0.0"}
SECURITY_MODEL_V2C = 2
SECURITY_MODEL_USM = 3
SNMP_TRAP_OID = (1, 3, 6, 1, 6, 3, 1, 1, 4, 1, 0)  # snmpTrapOID.0 (RFC 3418)
SYS_UPTIME_0 = (*SYS_OIDS["sysUpTime"], 0)
MP_V2C, MP_V3 = 1, 3  # message processing models (RFC 3411)
NO_AUTH_NO_PRIV, AUTH_PRIV = 1, 3  # security levels


def parse_oid(oid: str) -> tuple[int, ...]:
    """'1.3.6.1' → (1, 3, 6, 1)."""
    return tuple(int(arc) for arc in oid.strip(".").split("."))


def smi_value(datatype: str, raw: RawValue) -> Any:
    """A pysnmp SMI object of the right type for a profile datatype."""
    return SMI_TYPES[datatype](raw)


class SnmpAgent:
    """One simulated SNMP device: its profile points, the system group and its credentials."""

    def __init__(self, device_id: str, profile: DeviceProfile, host: str, port: int,
                 credentials: Mapping[str, ResolvedCredential], *, sys_descr: str | None = None,
                 latency_ms: tuple[float, float] | None = None, rng: random.Random | None = None):
        if not credentials:
            raise ValueError(f"{device_id}: an SNMP agent needs at least one credential")
        self.device_id = device_id
        self.profile = profile
        self.host = host
        self.port = port
        self.credentials = dict(credentials)
        self.sys_descr = sys_descr or f"facwatch simulator: {profile.vendor} {profile.model}"
        # answer each request after a delay drawn from [low, high] ms, like a real network card (set before start)
        self.latency_ms = latency_ms
        self._rng = rng or random.Random()
        self._raw: dict[str, RawValue] = {}
        self._engine: engine.SnmpEngine | None = None
        self._socket: socket.socket | None = None
        self._started_at = 0.0

    @property
    def running(self) -> bool:
        """True between start() and stop()."""
        return self._engine is not None

    def update(self, raw: Mapping[str, RawValue]) -> None:
        """Set the raw wire values served, keyed by point name (read at request time)."""
        self._raw.update(raw)

    async def start(self) -> None:
        """Bind the UDP port and start answering (must run inside the event loop)."""
        if self._engine is not None:
            return
        self._socket = bind_udp(self.host, self.port, "SNMP agent")
        eng = engine.SnmpEngine()
        try:
            _add_transport(eng, self._socket, self._delay_s if self.latency_ms else None)
            for name, credential in self.credentials.items():
                _add_credential(eng, name, credential)
            self._register_objects(eng)
        except BaseException:
            eng.close_dispatcher()
            self._close_socket()
            raise
        snmp_context = context.SnmpContext(eng)
        # GET, GETNEXT and GETBULK only: no SetCommandResponder, the simulator is read-only
        cmdrsp.GetCommandResponder(eng, snmp_context)
        cmdrsp.NextCommandResponder(eng, snmp_context)
        cmdrsp.BulkCommandResponder(eng, snmp_context)
        self._started_at = time.monotonic()
        self._engine = eng

    async def stop(self) -> None:
        """Close the socket and cancel pysnmp's timer task."""
        eng, self._engine = self._engine, None
        if eng is None:
            return
        eng.close_dispatcher()
        # transport.close() and task.cancel() complete on the next loop iterations
        for _ in range(3):
            await asyncio.sleep(0)
        self._close_socket()

    def _close_socket(self) -> None:
        """Close our socket even if pysnmp's endpoint future was cancelled before it took it over."""
        sock, self._socket = self._socket, None
        if sock is not None:
            sock.close()

    async def send_trap(self, trap: TrapSpec, values: Mapping[str, RawValue] | None,
                        targets: Sequence[tuple[str, int]],
                        extra_varbinds: Sequence[tuple[str, str, RawValue]] = ()) -> int:
        """Send ``trap`` as an SNMPv2 trap to every target, from this agent's own UDP port; return how many went.

        Varbinds: sysUpTime.0, snmpTrapOID.0, the trap's points with their raw values from ``values``
        (None = the values served now; a point without a value is left out), then ``extra_varbinds``
        as (OID, profile datatype, raw), e.g. ``("1.3.6.1.2.1.33.1.6.2.1.2.1", "object_identifier",
        "1.3.6.1.2.1.33.1.6.3.3")``. v2c with the first community the agent serves, else v3 authPriv
        with its first user. A target that cannot be reached is logged and skipped.
        """
        eng = self._engine
        if eng is None:
            raise RuntimeError(f"{self.device_id}: start the agent before sending traps")
        pdu = self._trap_pdu(trap, self._raw if values is None else values, extra_varbinds)
        security = self._trap_security()
        await self._transport_ready(eng)
        sent = 0
        for host, port in targets:
            address = await self._target_address(host, port)
            if address is None:
                continue
            try:
                # The message dispatcher directly (not NotificationOriginator): it sends through the
                # transport registered for udp.DOMAIN_NAME, i.e. this agent's bound socket, so the source
                # port is the agent's port; and it skips VACM, whose notify view is empty on purpose.
                eng.message_dispatcher.send_pdu(eng, self._domain, address, *security, None, b"", 1, pdu, False)
            except (PySnmpError, PyAsn1Error, OSError) as exc:
                log.warning("%s: trap %s to %s:%s not sent: %s", self.device_id, trap.name, host, port,
                            type(exc).__name__)
                continue
            sent += 1
        return sent

    async def _transport_ready(self, eng: engine.SnmpEngine, timeout_s: float = 1.0) -> None:
        """Wait for pysnmp's endpoint (created by a background future); sends before it only queue."""
        # a stop() right after start() would drop what is still queued
        transport = config.get_transport(eng, self._domain)
        deadline = time.monotonic() + timeout_s
        while getattr(transport, "transport", True) is None and time.monotonic() < deadline:
            await asyncio.sleep(0.001)

    async def _target_address(self, host: str, port: int) -> tuple | None:
        """A target as a socket address of the agent's family, resolved without blocking; None if impossible."""
        family = self._socket.family if self._socket is not None else socket.AF_INET
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, family=family, type=socket.SOCK_DGRAM)
        except OSError as exc:
            log.warning("%s: trap target %s:%s is not reachable from udp %s:%s: %s", self.device_id, host, port,
                        self.host, self.port, type(exc).__name__)
            return None
        return infos[0][4]

    def _trap_pdu(self, trap: TrapSpec, values: Mapping[str, RawValue],
                  extra_varbinds: Sequence[tuple[str, str, RawValue]]) -> Any:
        """An SNMPv2-Trap-PDU: sysUpTime.0, snmpTrapOID.0, the trap's points, then the extras."""
        varbinds: list[tuple[tuple[int, ...], Any]] = [
            (SYS_UPTIME_0, rfc1902.TimeTicks(self._uptime_ticks())),
            (SNMP_TRAP_OID, rfc1902.ObjectIdentifier(parse_oid(trap.oid))),
        ]
        for name in trap.varbinds:
            spec = self.profile.point(name)
            if name in values:
                varbinds.append((parse_oid(spec.oid or ""), smi_value(spec.datatype, values[name])))
        varbinds += [(parse_oid(oid), smi_value(datatype, raw)) for oid, datatype, raw in extra_varbinds]
        pdu = v2c.SNMPv2TrapPDU()
        v2c.apiPDU.set_defaults(pdu)
        v2c.apiPDU.set_varbinds(pdu, varbinds)
        return pdu

    def _trap_security(self) -> tuple[int, int, bytes, int]:
        """(message model, security model, security name, level) of the credential traps go out with."""
        for name, credential in self.credentials.items():
            if isinstance(credential, ResolvedCommunity):
                # pysnmp finds the community by securityName (= the credential name given to
                # add_v1_system); its tables key on bytes, so a str name would not match
                return MP_V2C, SECURITY_MODEL_V2C, name.encode(), NO_AUTH_NO_PRIV
        for credential in self.credentials.values():
            if isinstance(credential, ResolvedV3):
                return MP_V3, SECURITY_MODEL_USM, credential.user.encode(), AUTH_PRIV
        raise RuntimeError(f"{self.device_id}: no credential to send traps with")  # pragma: no cover

    @property
    def _domain(self) -> tuple[int, ...]:
        """The transport domain the agent's socket was registered under (see ``_add_transport``)."""
        ipv6 = self._socket is not None and self._socket.family == socket.AF_INET6
        return udp6.DOMAIN_NAME if ipv6 else udp.DOMAIN_NAME

    def _delay_s(self) -> float:
        low, high = self.latency_ms or (0.0, 0.0)
        return self._rng.uniform(low, high) / 1000

    def _uptime_ticks(self) -> int:
        return int((time.monotonic() - self._started_at) * 100) & 0xFFFFFFFF

    def _register_objects(self, eng: engine.SnmpEngine) -> None:
        """Export a MibScalar + live MibScalarInstance for every profile point and the system group."""
        builder = eng.get_mib_builder()
        mib_scalar, mib_scalar_instance = builder.import_symbols("SNMPv2-SMI", "MibScalar", "MibScalarInstance")
        live = _live_instance_class(mib_scalar_instance)
        symbols: dict[str, Any] = {}
        for spec in self.profile.points:
            oid = parse_oid(spec.oid or "")
            empty = EMPTY_VALUES.get(spec.datatype, 0)
            syntax = smi_value(spec.datatype, empty)  # must carry a value (pitfall 7)
            symbols[f"s-{spec.name}"] = mib_scalar(oid[:-1], syntax).setMaxAccess("read-only")
            symbols[f"i-{spec.name}"] = live(oid[:-1], oid[-1:], syntax, partial(self._raw.get, spec.name, empty))
        for label, (syntax, read) in self._system_group().items():
            symbols[f"i-{label}"] = live(SYS_OIDS[label], (0,), syntax, read)
        builder.export_symbols(MIB_MODULE, **symbols)

    def _system_group(self) -> dict[str, tuple[Any, Callable[[], Any]]]:
        """SNMPv2-MIB system objects a poller reads to identify the device."""
        return {
            "sysDescr": (rfc1902.OctetString(""), lambda: self.sys_descr),
            "sysObjectID": (rfc1902.ObjectIdentifier("0.0"), lambda: self.profile.sys_object_id or "0.0"),
            "sysUpTime": (rfc1902.TimeTicks(0), self._uptime_ticks),  # since this agent started
            "sysName": (rfc1902.OctetString(""), lambda: self.device_id),
        }


def _live_instance_class(mib_scalar_instance: type) -> type:
    """A MibScalarInstance subclass whose value is read at request time (this engine's own SMI class)."""

    class LiveInstance(mib_scalar_instance):  # type: ignore[misc, valid-type]
        """Answers GET/GETNEXT with whatever ``read()`` returns now."""

        def __init__(self, type_name, inst_id, syntax, read: Callable[[], Any]):
            super().__init__(type_name, inst_id, syntax)
            self._read = read

        def getValue(self, name, **ctx):  # pysnmp's hook keeps its camelCase name in 7.x
            return self.syntax.clone(self._read())

    return LiveInstance


def _add_transport(eng: engine.SnmpEngine, sock: socket.socket, delay_s: Callable[[], float] | None = None) -> None:
    """Serve SNMP on an already bound UDP socket; with ``delay_s``, each request is handled that much later."""
    ipv6 = sock.family == socket.AF_INET6
    transport = (udp6.Udp6Transport if ipv6 else udp.UdpTransport)()
    if delay_s is not None:
        transport.datagram_received = partial(_delayed_datagram, transport, delay_s)  # type: ignore[method-assign]
    config.add_transport(eng, udp6.DOMAIN_NAME if ipv6 else udp.DOMAIN_NAME, transport.open_server_mode(sock=sock))


def _delayed_datagram(transport: Any, delay_s: Callable[[], float], datagram: bytes, address: Any) -> None:
    """Like pysnmp's own ``datagram_received``, but hands the request to the engine later, not at once.

    The loop keeps serving other requests meanwhile, so a slow device delays only its own answers.
    """
    callback = transport._callback_function  # what pysnmp's own datagram_received calls via call_soon
    if callback is not None:
        transport.loop.call_later(delay_s(), callback, transport, address, datagram)


def _add_credential(eng: engine.SnmpEngine, name: str, credential: ResolvedCredential) -> None:
    """Accept one configured credential, with read access to mib-2 and enterprises only."""
    if isinstance(credential, ResolvedCommunity):
        config.add_v1_system(eng, name, credential.community.reveal())
        _grant_read(eng, name, SECURITY_MODEL_V2C, name, "noAuthNoPriv")
    elif isinstance(credential, ResolvedV3):
        config.add_v3_user(eng, credential.user,
                           AUTH_PROTOCOLS[credential.auth_protocol], credential.auth_key.reveal(),
                           PRIV_PROTOCOLS[credential.priv_protocol], credential.priv_key.reveal())
        _grant_read(eng, name, SECURITY_MODEL_USM, credential.user, "authPriv")
    else:  # pragma: no cover - the config schema has exactly these two kinds
        raise TypeError(f"unsupported credential {name!r}")


def _grant_read(eng: engine.SnmpEngine, name: str, security_model: int, security_name: str, level: str) -> None:
    """VACM: one group per credential; read = mib-2 + enterprises minus pysnmp's arc; write/notify = nothing."""
    group, read_view, no_view = f"g-{name}", f"r-{name}", f"none-{name}"
    config.add_context(eng, b"")
    config.add_vacm_group(eng, group, security_model, security_name)
    config.add_vacm_access(eng, group, b"", security_model, level, "exact", read_view, no_view, no_view)
    for subtree in READ_VIEW_SUBTREES:
        config.add_vacm_view(eng, read_view, "included", subtree, b"")
    config.add_vacm_view(eng, read_view, "excluded", PYSNMP_ENTERPRISE, b"")
    config.add_vacm_view(eng, no_view, "included", NOTHING, b"")

