"""What a simulated UPS agent sends as SNMP traps, decided from its values between ticks (pure, no I/O).

The emitter watches one device's values (engineering values and state names, as ``model.values()``
returns them; raw enum codes are accepted too) at a simulated time and answers which traps of the
device's profile to send now, with the varbinds that are not profile points. Sending is the agent's
job (``SnmpAgent.send_trap``)::

    emitter = UpsTrapEmitter(profile)                    # one per device, kept across ticks
    for name, extras in emitter.observe(values, sim_time_s):
        await agent.send_trap(profile.trap(name), raw_values, targets, extras)

Rules (REFERENCE.md §1.3 and §2):

* RFC 1628: upsTrapOnBattery at once on battery, then every 60 s while on battery; an alarm table whose
  rows (ids from 1, incrementing) follow the battery and output conditions, with
  upsTrapAlarmEntryAdded/Removed carrying ``upsAlarmDescr.{id}`` = the well-known alarm OID, except
  OnBattery (never "added": upsTrapOnBattery says it) and TestInProgress (never either way);
  upsTrapTestCompleted when upsTestResultsSummary becomes a done state.
* APC PowerNet: upsOnBattery / powerRestored, lowBattery / returnFromLowBattery,
  upsDiagnosticsPassed / upsDiagnosticsFailed on the matching state edges, each carrying a human text
  in mtrapargsString.
* Both: the same notification is not sent twice within 5 s (RFC 1628 §5), so a value flapping at a
  threshold cannot flood the receiver.

The first observation is the baseline (what "already existed at agent start"): it sends only the
persistent upsTrapOnBattery; state edges need a second observation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from collectors.codec import RawValue
from collectors.profile import DeviceProfile

ExtraVarbind = tuple[str, str, RawValue]  # (numeric OID, profile datatype, raw value)
Values = Mapping[str, object]

ON_BATTERY_RESEND_S = 60.0  # RFC 1628 upsTrapOnBattery: "sent ... once per minute"
MIN_REPEAT_S = 5.0  # RFC 1628: not more often than once every 5 s per notification and receiver
RFC1628_TRAPS = "1.3.6.1.2.1.33.2"  # upsTraps
UPS_ALARM_DESCR = "1.3.6.1.2.1.33.1.6.2.1.2"  # upsAlarmDescr.{upsAlarmId}
UPS_WELL_KNOWN_ALARMS = "1.3.6.1.2.1.33.1.6.3"  # upsWellKnownAlarms.N
MAX_ALARM_ID = 2_147_483_647  # upsAlarmId is PositiveInteger
MTRAPARGS_STRING = "1.3.6.1.4.1.318.2.3.3.0"  # PowerNet-MIB mtrapargsString.0
RFC_DONE_TESTS = frozenset({"donePass", "doneWarning", "doneError", "aborted"})


class PendingTrap(NamedTuple):
    """A trap to send now: its profile trap name and the varbinds that are not profile points."""

    name: str
    extra_varbinds: tuple[ExtraVarbind, ...] = ()


@dataclass(frozen=True, slots=True)
class AlarmCondition:
    """One RFC 1628 well-known alarm and when it is present."""

    name: str
    number: int  # upsWellKnownAlarms.N
    present: Callable[[Values], bool]
    trap_on_add: bool = True
    trap_on_remove: bool = True

    @property
    def oid(self) -> str:
        """The well-known alarm OID, the value of upsAlarmDescr."""
        return f"{UPS_WELL_KNOWN_ALARMS}.{self.number}"


RFC_ALARMS = (
    # upsTrapOnBattery already says "on battery", so that row is added silently (its removal is sent)
    AlarmCondition("upsAlarmOnBattery", 2, lambda v: v.get("output.source") == "battery", trap_on_add=False),
    AlarmCondition("upsAlarmLowBattery", 3, lambda v: v.get("battery.status") == "batteryLow"),
    AlarmCondition("upsAlarmDepletedBattery", 4, lambda v: v.get("battery.status") == "batteryDepleted"),
    AlarmCondition("upsAlarmUpsOutputOff", 14, lambda v: v.get("output.source") == "none"),
    # the RFC never sends TestInProgress rows either way: upsTrapTestCompleted reports the test
    AlarmCondition("upsAlarmTestInProgress", 24, lambda v: v.get("ups.test.result") == "inProgress",
                   trap_on_add=False, trap_on_remove=False),
)

# mtrapargsString texts in the style of the Network Management Card's event log
APC_TEXTS = {
    "upsOnBattery": "UPS: On battery power in response to an input power problem.",
    "powerRestored": "UPS: No longer on battery power.",
    "lowBattery": "UPS: The battery power is too low to support the load; if power fails, "
                  "the UPS will be shut down immediately.",
    "returnFromLowBattery": "UPS: The battery power is no longer too low to support the load.",
    "upsDiagnosticsPassed": "UPS: Passed a self-test.",
    "upsDiagnosticsFailed": "UPS: Failed a self-test.",
}
# (point, state): (trap when the point becomes that state, trap when it stops being it)
APC_EDGES: dict[tuple[str, str], tuple[str | None, str | None]] = {
    ("output.status", "onBattery"): ("upsOnBattery", "powerRestored"),
    ("battery.status", "batteryLow"): ("lowBattery", "returnFromLowBattery"),
    ("ups.test.result", "ok"): ("upsDiagnosticsPassed", None),
    ("ups.test.result", "failed"): ("upsDiagnosticsFailed", None),
}


def parse_targets(targets: Sequence[str]) -> list[tuple[str, int]]:
    """``simulation.trap_targets`` ("host:port", IPv6 as "[::1]:162" or "::1:162") as (host, port) pairs."""
    pairs = []
    for target in targets:
        host, _, port = target.rpartition(":")
        pairs.append((host.strip("[]"), int(port)))
    return pairs


class UpsTrapEmitter:
    """Decides a UPS agent's traps from its values; one per device, fed every tick."""

    def __init__(self, profile: DeviceProfile):
        self.profile = profile
        self._traps = frozenset(trap.name for trap in profile.traps)
        self._states = {spec.name: {code: s.name for code, s in spec.enum.items()}
                        for spec in profile.points if spec.enum}
        self._previous: dict[str, object] | None = None
        self._on_battery_sent_at: float | None = None
        self._alarms: dict[str, int] = {}  # alarm name → upsAlarmId
        self._next_alarm_id = 1
        self._last_sent: dict[tuple[str, tuple[RawValue, ...]], float] = {}
        rfc1628 = any(trap.oid.startswith(f"{RFC1628_TRAPS}.") for trap in profile.traps)
        self._rules = self._rfc1628 if rfc1628 else self._apc

    @property
    def alarm_rows(self) -> dict[int, str]:
        """The RFC 1628 alarm table now: upsAlarmId → well-known alarm OID (for an agent serving it)."""
        oids = {condition.name: condition.oid for condition in RFC_ALARMS}
        return {alarm_id: oids[name] for name, alarm_id in sorted(self._alarms.items(), key=lambda i: i[1])}

    def observe(self, values: Values, now: float) -> list[PendingTrap]:
        """The traps to send for the values at simulated time ``now`` (seconds, any origin)."""
        current = self._state_names(values)
        pending = self._rules(current, now)
        self._previous = current
        return self._rate_limited([trap for trap in pending if trap.name in self._traps], now)

    # --- RFC 1628 ----------------------------------------------------------------------------------

    def _rfc1628(self, values: dict[str, object], now: float) -> list[PendingTrap]:
        baseline = self._previous is None
        pending = self._on_battery(values, now)
        pending += self._alarm_changes(values, announce=not baseline)
        if not baseline:
            pending += self._test_completed(values)
        return pending

    def _on_battery(self, values: dict[str, object], now: float) -> list[PendingTrap]:
        """Persistent: at once, then every minute until the UPS leaves battery (or turns off)."""
        if values.get("output.source") != "battery":
            self._on_battery_sent_at = None
            return []
        sent = self._on_battery_sent_at
        if sent is not None and sent <= now < sent + ON_BATTERY_RESEND_S:
            return []
        self._on_battery_sent_at = now
        return [PendingTrap("upsTrapOnBattery")]

    def _alarm_changes(self, values: dict[str, object], *, announce: bool) -> list[PendingTrap]:
        """Add and remove alarm rows; at the baseline the rows exist without traps."""
        pending = []
        for condition in RFC_ALARMS:
            present = condition.present(values)
            if present and condition.name not in self._alarms:
                alarm_id = self._alarms[condition.name] = self._new_alarm_id()
                if announce and condition.trap_on_add:
                    pending.append(PendingTrap("upsTrapAlarmEntryAdded", _alarm_varbinds(alarm_id, condition)))
            elif not present and condition.name in self._alarms:
                alarm_id = self._alarms.pop(condition.name)
                if condition.trap_on_remove:
                    pending.append(PendingTrap("upsTrapAlarmEntryRemoved", _alarm_varbinds(alarm_id, condition)))
        return pending

    def _new_alarm_id(self) -> int:
        """The next upsAlarmId: incrementing from 1, wrapping to the first free value ≥ 1."""
        used = set(self._alarms.values())
        alarm_id = self._next_alarm_id
        while alarm_id in used or alarm_id > MAX_ALARM_ID:
            alarm_id = 1 if alarm_id >= MAX_ALARM_ID else alarm_id + 1
        self._next_alarm_id = alarm_id + 1
        return alarm_id

    def _test_completed(self, values: dict[str, object]) -> list[PendingTrap]:
        result = values.get("ups.test.result")
        previous = (self._previous or {}).get("ups.test.result")
        if result in RFC_DONE_TESTS and result != previous:
            return [PendingTrap("upsTrapTestCompleted")]
        return []

    # --- APC PowerNet ------------------------------------------------------------------------------

    def _apc(self, values: dict[str, object], now: float) -> list[PendingTrap]:
        if self._previous is None:
            return []
        pending = []
        for (point, state), (on_enter, on_leave) in APC_EDGES.items():
            was, now = self._previous.get(point) == state, values.get(point) == state
            name = on_enter if now and not was else on_leave if was and not now else None
            if name is not None:
                pending.append(PendingTrap(name, ((MTRAPARGS_STRING, "octet_string", APC_TEXTS[name]),)))
        return pending

    # --- shared ------------------------------------------------------------------------------------

    def _state_names(self, values: Values) -> dict[str, object]:
        """Values with raw enum codes turned into state names, so raw and engineering input both work."""
        named = dict(values)
        for point, states in self._states.items():
            value = named.get(point)
            if isinstance(value, int | float) and not isinstance(value, bool) and int(value) in states:
                named[point] = states[int(value)]
        return named

    def _rate_limited(self, pending: list[PendingTrap], now: float) -> list[PendingTrap]:
        """Drop a notification identical to one sent less than 5 s ago (the persistent one is 60 s apart).

        Identical = same trap and same extra values: a LowBattery row re-added under a new upsAlarmId is
        still the same notification.
        """
        sent = []
        for trap in pending:
            key = (trap.name, tuple(raw for _, _, raw in trap.extra_varbinds))
            last = self._last_sent.get(key)
            if last is not None and last <= now < last + MIN_REPEAT_S:
                continue
            self._last_sent[key] = now
            sent.append(trap)
        return sent


def _alarm_varbinds(alarm_id: int, condition: AlarmCondition) -> tuple[ExtraVarbind, ...]:
    """upsAlarmDescr.{id} = the well-known alarm OID (upsAlarmId itself is not-accessible)."""
    return ((f"{UPS_ALARM_DESCR}.{alarm_id}", "object_identifier", condition.oid),)
