"""The power chain as a view-model: mains → ATS ← generator; ATS → UPS rings → load; which path is live.

Pure functions of a ``Snapshot``. A line is ``live`` (carries the load now), ``dead`` (could, but does
not), or ``unknown`` (a device on it is stale or silent: never drawn as live from old data).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from alerts.derived import Estimate
from collectors.model import Severity
from config.schema import Device
from dashboard.data import MISSING_TEXT, format_number
from dashboard.envelope import estimate_severity, fuel_days, ups_full_load
from dashboard.live import Fact, Snapshot, fact, present

LIVE, DEAD, UNKNOWN = "live", "dead", "unknown"

# UPS output states of both profiles (RFC 1628 upsOutputSource, PowerNet upsBasicOutputStatus) by path
UPS_MODES = {
    "normal": ("normal", "onLine", "eConversion", "ecoMode", "onSmartBoost", "onSmartTrim", "booster", "reducer",
               "hotStandby", "activeLoad", "staticBypassStandby", "powerSavingMode", "inverterStandby"),
    "battery": ("battery", "onBattery", "onBatteryTest", "batteryDischargeSpotmode"),
    "bypass": ("bypass", "softwareBypass", "switchedBypass", "hardwareFailureBypass", "emergencyStaticBypass"),
    "off": ("none", "off", "timedSleeping", "rebooting", "sleepingUntilPowerReturn"),
}
UPS_MODE_TEXT = {"normal": "INVERTER", "battery": "ON BATTERY", "bypass": "ON BYPASS", "off": "OUTPUT OFF"}
UPS_OUTPUT_POINTS = ("output.source", "output.status")
GENERATOR_RUNNING = ("running", "warming_up", "cooling_down", "post_run")


@dataclass(frozen=True, slots=True)
class Node:
    """One box of the diagram: a source, the switch, a UPS or a load."""

    key: str  # "mains", "load-<ups id>" or a device id
    label: str
    kind: str  # mains, generator, ats, ups, load
    state: str  # a Severity value, or stale / nodata
    status_text: str  # the big word in the box
    facts: tuple[Fact, ...] = ()
    age_text: str = ""
    device_id: str | None = None


@dataclass(frozen=True, slots=True)
class UpsBranch:
    """A UPS ring: its feed from the ATS, the UPS, its output line and the load it carries."""

    feed: str  # line state ATS → UPS input
    ups: Node
    mode: str | None  # normal, battery, bypass, off; None when unknown
    output: str  # line state UPS → load
    load: Node


@dataclass(frozen=True, slots=True)
class PowerChainView:
    """The single-line diagram's contents and a one-line summary of the path carrying the load."""

    mains: Node
    mains_line: str
    generators: tuple[tuple[Node, str], ...]  # each generator and its line to the ATS
    ats: Node | None
    branches: tuple[UpsBranch, ...]
    summary: str
    source: str | None  # mains, generator, battery, none; None when unknown


def ups_mode(state: str | None) -> str | None:
    """A UPS output state name as the path it takes: normal, battery, bypass, off (None when unknown)."""
    return next((mode for mode, names in UPS_MODES.items() if state in names), None)


def _output_point(snapshot: Snapshot, device: Device) -> str:
    points = {spec.name for spec in snapshot.site.profile(device).points}
    return next((p for p in UPS_OUTPUT_POINTS if p in points), UPS_OUTPUT_POINTS[0])


def _device_node(snapshot: Snapshot, device: Device, kind: str, status_text: str | None,
                 facts: tuple[Fact, ...]) -> Node:
    tile = snapshot.tile(device)
    fresh = tile.state not in ("stale", "nodata")
    return Node(device.id, device.label, kind, tile.state, status_text if fresh and status_text else tile.status_text,
                facts, tile.age_text, device.id)


def _estimate_fact(label: str, estimate: Estimate | None, unit: str, severity: Severity | None) -> Fact:
    if estimate is None:
        return Fact(label, MISSING_TEXT, "", "missing", "not computable")
    return Fact(label, format_number(estimate.value), unit, severity.value if severity else "", estimate.method)


def _ats(snapshot: Snapshot) -> tuple[Node | None, str | None, str | None, str | None]:
    """The first ATS: its node, position, mains and generator availability (None when unknown)."""
    devices = snapshot.devices("ats")
    if not devices:
        return None, None, None, None
    ats = devices[0]
    position = snapshot.state(ats, "ats.position")
    facts = present([fact(snapshot, ats, "ats.mode", "mode"), fact(snapshot, ats, "ats.mains.voltage", "mains"),
                     fact(snapshot, ats, "ats.generator.voltage", "generator")])
    text = {"mains": "ON MAINS", "generator": "ON GENERATOR", "open": "OPEN — NO SOURCE",
            "transferring": "TRANSFERRING"}.get(position or "")
    node = _device_node(snapshot, ats, "ats", text, facts)
    return (node, position, snapshot.state(ats, "ats.mains_available"),
            snapshot.state(ats, "ats.generator_available"))


def _mains(snapshot: Snapshot, ats: Node | None, available: str | None, position: str | None) -> tuple[Node, str]:
    if available == "available":
        node = Node("mains", "Utility mains", "mains", Severity.OK.value, "AVAILABLE")
    elif available == "unavailable":
        node = Node("mains", "Utility mains", "mains", Severity.CRITICAL.value, "FAILED")
    else:
        node = Node("mains", "Utility mains", "mains", "stale" if ats else "nodata", "UNKNOWN")
    if ats is not None:
        node = Node(node.key, node.label, node.kind, node.state, node.status_text,
                    tuple(replace(f, label="voltage") for f in ats.facts if f.label == "mains"), ats.age_text)
    if position is None:
        return node, UNKNOWN
    return node, LIVE if position == "mains" and available != "unavailable" else DEAD


def _generator(snapshot: Snapshot, device: Device, position: str | None) -> tuple[Node, str]:
    engine = snapshot.state(device, "engine.state")
    days = fuel_days(snapshot.rules, device, snapshot.number(device, "fuel.level"))
    power = snapshot.number(device, "genset.power")
    facts = present([
        fact(snapshot, device, "genset.mode", "mode"),
        Fact("power", format_number(power / 1000), "kW") if power is not None else None,
        fact(snapshot, device, "genset.load", "load"),
        fact(snapshot, device, "fuel.level", "fuel"),
        _estimate_fact("fuel at full load", days, "days",
                       estimate_severity(snapshot.rules, device, "fuel_days_full_load", days and days.value)),
    ])
    running = engine in GENERATOR_RUNNING
    node = _device_node(snapshot, device, "generator", "RUNNING" if running else (engine or "").upper(), facts)
    if position is None or engine is None:
        return node, UNKNOWN
    return node, LIVE if position == "generator" and running else DEAD


def _branch(snapshot: Snapshot, device: Device, ats_live: bool | None) -> UpsBranch:
    mode = ups_mode(snapshot.state(device, _output_point(snapshot, device)))
    runtime = snapshot.number(device, "battery.runtime")
    load = snapshot.number(device, "ups.load")
    projected = ups_full_load(snapshot.rules, device, runtime, load)
    facts = present([
        fact(snapshot, device, "ups.load", "load"),
        fact(snapshot, device, "battery.runtime", "runtime now"),
        _estimate_fact("runtime at full load", projected, "min",
                       estimate_severity(snapshot.rules, device, "ups_autonomy_full_load",
                                         projected and projected.value)),
        fact(snapshot, device, "battery.charge", "charge"),
    ])
    node = _device_node(snapshot, device, "ups", UPS_MODE_TEXT.get(mode or ""), facts)
    if mode is None:
        feed = output = UNKNOWN
    else:
        draws_input = mode in ("normal", "bypass")
        feed = UNKNOWN if ats_live is None and draws_input else (LIVE if draws_input and ats_live else DEAD)
        output = DEAD if mode == "off" else LIVE
    powered = {LIVE: ("ok", "POWERED"), DEAD: ("critical", "NO POWER"), UNKNOWN: ("stale", "UNKNOWN")}[output]
    watts = snapshot.number(device, "output.realpower")
    load_facts = present([Fact("power", format_number(watts / 1000), "kW") if watts is not None else None,
                          fact(snapshot, device, "ups.load", "load")])
    load_node = Node(f"load-{device.id}", f"Load · {device.label}", "load", powered[0], powered[1], load_facts,
                     node.age_text)
    return UpsBranch(feed, node, mode, output, load_node)


def power_chain_view(snapshot: Snapshot) -> PowerChainView:
    """The diagram of the site's power chain from one snapshot."""
    ats, position, mains_available, _ = _ats(snapshot)
    mains, mains_line = _mains(snapshot, ats, mains_available, position)
    generators = tuple(_generator(snapshot, device, position) for device in snapshot.devices("genset"))
    ats_live = None if position is None else position in ("mains", "generator")
    branches = tuple(_branch(snapshot, device, ats_live) for device in snapshot.devices("ups"))
    source, summary = _summary(position, branches)
    return PowerChainView(mains, mains_line, generators, ats, branches, summary, source)


def _summary(position: str | None, branches: tuple[UpsBranch, ...]) -> tuple[str | None, str]:
    """Where the load's power comes from, in words."""
    modes = [b.mode for b in branches]
    if branches and all(m == "battery" for m in modes):
        return "battery", "Load on UPS batteries"
    on_battery = sum(m == "battery" for m in modes)
    extra = f" ({on_battery} UPS on battery)" if on_battery else ""
    if any(m == "bypass" for m in modes):
        extra += " — UPS on bypass: load unprotected"
    if position == "mains":
        return "mains", "Load on utility mains" + extra
    if position == "generator":
        return "generator", "Load on generator" + extra
    if position in ("open", "transferring"):
        if on_battery:
            return "battery", f"ATS {position}: load on UPS batteries"
        return "none", f"ATS {position}"
    return None, "Power source unknown (no fresh ATS data)" + extra
