"""The store contracts: what the collectors write to and what the dashboard reads from.

SQLite (``storage.sqlite``) and InfluxDB (``storage.influx``) implement both, so the collectors, alerts,
evidence and dashboard never know which one they talk to.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol, runtime_checkable

from collectors.model import Event, Quality, Reading


@dataclass(frozen=True, slots=True)
class SeriesKey:
    """One stored series: a point of a device."""

    device: str
    point: str


@dataclass(frozen=True, slots=True)
class Bucket:
    """One downsampled interval of a series: ``count`` GOOD samples summarised, ``missing`` others."""

    start: float  # bucket start, epoch seconds
    minimum: float | None
    maximum: float | None
    mean: float | None
    count: int
    missing: int


class Sample(NamedTuple):
    """One raw stored sample: a value only when GOOD (MISSING and INVALID samples carry None)."""

    ts: float  # epoch seconds, millisecond precision
    value: float | None
    quality: Quality


@runtime_checkable
class WriteStore(Protocol):
    """Accepts batches of readings; a call returns only once the batch is durable."""

    def write(self, readings: Sequence[Reading]) -> int:
        """Store a batch idempotently (same device, point and ts overwrite); return how many were new."""
        ...

    def write_events(self, events: Sequence[Event]) -> None:
        """Store events (traps, scenario markers) durably, in the order given."""
        ...

    def apply_retention(self, now: float) -> int:
        """Delete samples older than the configured retention; return how many were removed."""
        ...

    def close(self) -> None:
        """Flush and release the store."""
        ...


@runtime_checkable
class ReadStore(Protocol):
    """Answers the dashboard's (and later the alert engine's and evidence's) questions."""

    def series(self) -> list[SeriesKey]:
        """Every series that has at least one sample."""
        ...

    def latest(self, devices: Iterable[str] | None = None) -> list[Reading]:
        """The most recent reading of every point, optionally only for some devices."""
        ...

    def query(self, device: str, point: str, start: float, end: float, max_points: int) -> list[Bucket]:
        """Samples in [start, end) downsampled server-side to at most ``max_points`` buckets.

        Buckets start at ``start``, not at the epoch. A store may answer from pre-aggregated rollups, but
        only with the answer the retained raw samples give (the mean up to float rounding).
        """
        ...

    def samples(self, device: str, point: str, start: float, end: float) -> Iterator[Sample]:
        """The raw samples in [start, end), oldest first, streamed; scenario-tagged (drill) samples left out."""
        ...

    def sample_before(self, device: str, point: str, start: float, look_back: float) -> Sample | None:
        """The newest raw sample in [start - look_back, start), drills left out; None when there is none."""
        ...

    def events(self, start: float, end: float, device: str | None = None, limit: int = 1000) -> list[Event]:
        """Events in [start, end), newest first, optionally for one device."""
        ...

    def close(self) -> None:
        """Release the store."""
        ...
