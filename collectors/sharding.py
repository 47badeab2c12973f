"""Split one site's devices over several collector processes: ``facwatch collect --shard i/n``.

A device belongs to shard ``sha256(device id) mod n``: stable across processes, restarts, Python
versions and config edits (adding a device never moves another one), and balanced for any number of
devices. Each shard runs a collector, alert engine and notification pipeline over ONLY its own devices
(``shard_site``), with a SQLite file and an InfluxDB spool of its own, and writes readings to the
one InfluxDB of the site, where one dashboard reads them all (DESIGN.md §3.4).

What a shard cannot do alone:

- compound rules that combine points of several devices (power chain, rings) only see the shard's
  devices; keep such a group in one process (one config per site, or ``--shard 1/1``);
- SNMP traps arrive on one port, so a sharded site receives none; every trap point is also polled.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from config.load import Site

log = logging.getLogger(__name__)

MAX_SHARDS = 1024
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
        """True if this shard polls ``device_id``."""
        return shard_of(device_id, self.count) == self.index


def shard_of(device_id: str, count: int) -> int:
    """The 1-based shard that polls ``device_id`` when a site is split ``count`` ways."""
    digest = hashlib.sha256(device_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count + 1


def assignment(device_ids: Iterable[str], count: int) -> dict[int, list[str]]:
    """Which devices each of ``count`` shards polls (every shard listed, in order)."""
    shards: dict[int, list[str]] = {index: [] for index in range(1, count + 1)}
    for device_id in device_ids:
        shards[shard_of(device_id, count)].append(device_id)
    return shards


def shard_path(path: str | PurePath, shard: Shard) -> Path:
    """``var/facwatch.db`` → ``var/facwatch.shard-1-of-2.db``: a file of the shard's own."""
    path = Path(path)
    return path.with_name(f"{path.stem}.shard-{shard.label}{path.suffix}")


def shard_site(site: Site, shard: Shard) -> Site:
    """The site as shard ``shard`` sees it: its devices only, with its own SQLite file and spool.

    ``Shard(1, 1)`` returns the site unchanged. Other shards get no trap listener (one port per site).
    """
    if shard.count == 1:
        return site
    devices = [device for device in site.config.devices if shard.owns(device.id)]
    storage = site.config.storage.model_copy(update={"path": str(shard_path(site.config.storage.path, shard))})
    config = site.config.model_copy(update={"devices": devices, "storage": storage, "traps": None})
    influx = site.influx
    if influx is not None:
        influx = dataclasses.replace(influx, spool_path=shard_path(influx.spool_path, shard))
    if site.config.traps is not None:
        log.warning("shard %s: SNMP traps are not received by sharded collectors (one port per site); "
                    "every trap point is still polled", shard.label)
    profiles = {device.profile: site.profiles[device.profile] for device in devices}
    return dataclasses.replace(site, config=config, profiles=profiles, influx=influx)
