"""Split one site's devices over several collector processes: ``facwatch collect --shard i/n``.

A device belongs to shard ``sha256(device id) mod n``: stable across processes, restarts, Python
versions and config edits (adding a device never moves another one), and balanced for any number of
devices. Each shard runs a collector, alert engine and notification pipeline over ONLY its own devices
(``shard_site``), with a SQLite file and an InfluxDB spool of its own, and writes readings to the
one InfluxDB of the site, where one dashboard reads them all (DESIGN.md §3.4).

Rules that combine several devices stay whole. A site-scope rule (``mains_failure``: the ATS and every
UPS; ``ups_ring_redundancy_lost``: every ring's UPS load), a device-scope compound rule whose terms read
other devices (``zone_disabled_while_armed``: pre-action and fire panel) and a schedule rule whose
qualifying test does so, would see only part of their inputs in a shard. So the devices such a rule
reads form a group (groups sharing a device merge), and a group goes to ``shard_of(min(its ids), n)``;
devices in no group hash as above, so a site without such rules shards exactly as before. The shard
with the group evaluates the rule on complete data; the other shards hold none of its devices, and the
engine only evaluates a rule on readings of devices it reads: there it never fires, never holds an
alert and raises no missing-data alert (data missing is per device and point, never per rule).

SNMP traps arrive on one port, so exactly one shard listens: the one with the group of a site-scope
rule (the power chain, where a trap matters most), else shard 1. It knows every device of the site, so
a trap is attributed to the right sender, and it stores the readings a trap carries for every device
(in the shared InfluxDB, tagged like the owner's polls, so the dashboard shows them). Its alert engine
ignores other shards' devices, as every shard's does: alerting on a trap point of another shard's
device waits for that shard's next poll (every trap varbind the receiver turns into a reading is a
profile point, and every profile point is polled), which is late by at most one poll interval but never
built on partial data. Trap events (the notification itself) go to the listening shard's store.

The evidence detectors (generator runs, power incidents) read the ATS with the gensets and the UPSs,
so the site's power chain is kept together as well, named ``evidence:power_chain`` in the plan.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import logging
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import TYPE_CHECKING

from alerts.rules import RING_LOAD_POINT, Rule, Term, matches
from collectors.model import Kind

if TYPE_CHECKING:
    from config.load import Site
    from config.schema import Device

log = logging.getLogger(__name__)

MAX_SHARDS = 1024
POWER_CHAIN_CLASSES = ("ats", "genset", "ups")  # what evidence/detectors.py reads together
POWER_CHAIN = "evidence:power_chain"
_SPEC = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


@dataclass(frozen=True, slots=True)
class Shard:
    """Shard ``index`` (1-based) of ``count``.

    Example: ``Shard.parse("2/3").owns("dh1-ups-a")`` is True for about a third of all device ids.
    """

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 1 <= self.count <= MAX_SHARDS:
            raise ValueError(f"the shard count must be 1–{MAX_SHARDS}, not {self.count}")
        if not 1 <= self.index <= self.count:
            raise ValueError(f"shard {self.index}/{self.count}: the index must be 1–{self.count}")

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"i/n"`` → Shard(i, n); ValueError with an operator-readable message otherwise."""
        match = _SPEC.match(text)
        if match is None:
            raise ValueError(f"a shard is written i/n, e.g. 1/2 (got {text!r})")
        return cls(int(match[1]), int(match[2]))

    @property
    def label(self) -> str:
        """``1-of-2``: for file names and logs."""
        return f"{self.index}-of-{self.count}"

    def owns(self, device_id: str) -> bool:
        """True if this shard polls ``device_id`` when it is in no group (see ``ShardPlan`` for grouped ones)."""
        return shard_of(device_id, self.count) == self.index


@dataclass(frozen=True, slots=True)
class ShardGroup:
    """Devices one shard polls together because rules combine their readings.

    Example: ``ShardGroup(("ats-1", "ups-a", "ups-b"), ("mains_failure", "ups_ring_redundancy_lost"), True)``.
    """

    devices: tuple[str, ...]  # sorted: the first one places the group
    rules: tuple[str, ...]
    site_wide: bool  # a site-scope rule is among the rules

    def shard(self, count: int) -> int:
        """The shard that polls the whole group."""
        return shard_of(self.devices[0], count)


@dataclass(frozen=True, slots=True)
class ShardPlan:
    """Which shard polls each device of a site split ``count`` ways, and which one receives its traps."""

    count: int
    owners: Mapping[str, int]  # device id → shard index
    groups: tuple[ShardGroup, ...]
    trap_shard: int

    def devices(self, index: int) -> list[str]:
        """The devices shard ``index`` polls, in site order."""
        return [device for device, owner in self.owners.items() if owner == index]

    def describe(self, index: int) -> str:
        """``shard 1/2: 14 devices (6 kept together for mains_failure, ups_ring_redundancy_lost)``."""
        text = f"shard {index}/{self.count}: {len(self.devices(index))} devices"
        kept = [group for group in self.groups if group.shard(self.count) == index]
        if kept:
            rules = ", ".join(sorted({rule for group in kept for rule in group.rules}))
            text += f" ({sum(len(group.devices) for group in kept)} kept together for {rules})"
        return text


def shard_of(device_id: str, count: int) -> int:
    """The 1-based shard that polls ``device_id`` when a site is split ``count`` ways (and it is in no group)."""
    digest = hashlib.sha256(device_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count + 1


def assignment(device_ids: Iterable[str], count: int,
               groups: Iterable[Collection[str]] = ()) -> dict[int, list[str]]:
    """Which devices each of ``count`` shards polls (every shard listed, in order); a group goes whole to one."""
    owners = {device: shard_of(min(group), count) for group in groups for device in group}
    shards: dict[int, list[str]] = {index: [] for index in range(1, count + 1)}
    for device_id in device_ids:
        shards[owners.get(device_id) or shard_of(device_id, count)].append(device_id)
    return shards


def plan_shards(site: Site, count: int, rules: Sequence[Rule] = ()) -> ShardPlan:
    """The plan for ``site`` split ``count`` ways, keeping together the devices each of ``rules`` combines."""
    groups = rule_groups(site, rules)
    split = assignment([device.id for device in site.devices], count, [group.devices for group in groups])
    owners = {device: index for index, devices in split.items() for device in devices}
    site_wide = [group.shard(count) for group in groups if group.site_wide]
    return ShardPlan(count, owners, tuple(groups), site_wide[0] if site_wide else 1)


def rule_groups(site: Site, rules: Sequence[Rule]) -> list[ShardGroup]:
    """Connected groups of devices that one rule (or the evidence detectors) combines; groups sharing a device merge."""
    parent: dict[str, str] = {}

    def root(device: str) -> str:
        while parent[device] != device:
            parent[device] = parent[parent[device]]
            device = parent[device]
        return device

    combined = [(rule.name, rule.scope == "site", devices) for rule in rules
                if len(devices := combined_devices(site, rule)) > 1]
    chain = {device.id for device in site.devices if device.device_class in POWER_CHAIN_CLASSES}
    if len(chain) > 1:
        combined.append((POWER_CHAIN, True, chain))
    for _, _, devices in combined:
        first, *rest = sorted(devices)
        parent.setdefault(first, first)
        for device in rest:
            parent[root(parent.setdefault(device, device))] = root(first)
    members: dict[str, set[str]] = {}
    for device in parent:
        members.setdefault(root(device), set()).add(device)
    return [_group(devices, combined) for devices in sorted(members.values(), key=min)]


def _group(devices: set[str], combined: list[tuple[str, bool, set[str]]]) -> ShardGroup:
    named = [(name, site_wide) for name, site_wide, reads in combined if reads <= devices]
    return ShardGroup(tuple(sorted(devices)), tuple(name for name, _ in named), any(wide for _, wide in named))


def combined_devices(site: Site, rule: Rule) -> set[str]:
    """Devices whose readings one evaluation of ``rule`` combines (as the alert engine reads them)."""
    if rule.kind == "threshold" and rule.derived == "ring_redundancy":
        return {device.id for device in _subjects(site, rule) if RING_LOAD_POINT in _points(site, device, True)}
    if rule.kind == "compound" and rule.scope == "site":
        return {device for term in _terms(rule) for device in _read_by(site, term)}
    crossing = [term for term in _terms(rule) if not term.same_device()]
    if rule.kind not in ("compound", "schedule") or not crossing:
        return set()  # a rule about one device at a time: the device's own shard has all it needs
    reads = {device for term in crossing for device in _read_by(site, term)}
    return reads | {device.id for device in _subjects(site, rule)} if reads else set()


def _terms(rule: Rule) -> list[Term]:
    conditions = (rule.when, rule.unless, rule.qualifying.when if rule.qualifying else None)
    return [term for condition in conditions if condition is not None for term in condition.all_terms]


def _subjects(site: Site, rule: Rule) -> list[Device]:
    return [device for device in site.devices if matches(rule, device.device_class, device.room, device.id)]


def _read_by(site: Site, term: Term) -> set[str]:
    """Devices with a point this term reads: filters as given (none = the whole site), gauges or enum states."""
    filters = (term.device_class, term.room, term.device)
    found = set()
    for device in site.devices:
        where = (device.device_class, device.room, device.id)
        if not all(_any_glob(value, globs or ("*",)) for globs, value in zip(filters, where, strict=True)):
            continue
        if any(_any_glob(point, term.point) for point in _points(site, device, term.numeric())):
            found.add(device.id)
    return found


def _points(site: Site, device: Device, gauges: bool) -> list[str]:
    """The device's gauge points, or its points with enum states (what numeric and state terms read)."""
    points = site.profile(device).points
    return [p.name for p in points if (p.kind is Kind.GAUGE if gauges else bool(p.enum))]


def _any_glob(value: str, globs: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(value, glob) for glob in globs)


def shard_path(path: str | PurePath, shard: Shard) -> Path:
    """``var/facwatch.db`` → ``var/facwatch.shard-1-of-2.db``: a file of the shard's own."""
    path = Path(path)
    return path.with_name(f"{path.stem}.shard-{shard.label}{path.suffix}")


def shard_data_dir(data_dir: Path, shard: Shard) -> Path:
    """``--data-dir var`` → ``var/shard-1-of-2``: where a shard keeps facwatch.db when a data folder is given."""
    return data_dir / f"shard-{shard.label}" if shard.count > 1 else data_dir


def shard_site(site: Site, shard: Shard, rules: Sequence[Rule] = ()) -> Site:
    """The site as shard ``shard`` sees it: its devices only (``rules``' groups kept whole), files of its own.

    ``Shard(1, 1)`` returns the site unchanged. Only the plan's trap shard keeps the trap listener.
    """
    if shard.count == 1:
        return site
    plan = plan_shards(site, shard.count, rules)
    owned = set(plan.devices(shard.index))
    devices = [device for device in site.config.devices if device.id in owned]
    traps = site.config.traps if plan.trap_shard == shard.index else None
    storage = site.config.storage.model_copy(update={"path": str(shard_path(site.config.storage.path, shard))})
    config = site.config.model_copy(update={"devices": devices, "storage": storage, "traps": traps})
    influx = site.influx
    if influx is not None:
        influx = dataclasses.replace(influx, spool_path=shard_path(influx.spool_path, shard))
    log.info("%s", plan.describe(shard.index))
    if site.config.traps is not None:
        _log_traps(plan, shard)
    profiles = {device.profile: site.profiles[device.profile] for device in devices}
    return dataclasses.replace(site, config=config, profiles=profiles, influx=influx)


def _log_traps(plan: ShardPlan, shard: Shard) -> None:
    if plan.trap_shard != shard.index:
        log.info("shard %d/%d: SNMP traps are received by shard %d/%d (one port per site)", shard.index,
                 shard.count, plan.trap_shard, plan.count)
        return
    log.warning("shard %d/%d receives the site's SNMP traps: it stores trap readings of every device, but "
                "alerts only on its own; other shards' devices alert at their next poll (every trap point "
                "is polled)", shard.index, shard.count)
