"""Fakes for the dashboard's unit tests: an in-memory ReadStore, a settable clock, tiny site files."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import pytest

from collectors.model import Reading
from config.load import Site, load_site
from storage.base import Bucket, SeriesKey

ROOT = Path(__file__).resolve().parents[3]
DEMO_CONFIG = ROOT / "tests" / "data" / "sites" / "skeleton.yaml"  # the skeleton site: a stable fixture
T0 = 1_700_000_000.0


class FakeStore:
    """A ReadStore in memory that counts its calls and can be told to fail."""

    def __init__(self, readings: Iterable[Reading] = (), buckets: Iterable[Bucket] = ()):
        self.readings = list(readings)
        self.buckets = list(buckets)
        self.latest_calls: list[list[str] | None] = []
        self.query_calls: list[tuple] = []
        self.fail: Exception | None = None

    def series(self) -> list[SeriesKey]:
        return sorted({SeriesKey(r.device, r.point) for r in self.readings}, key=lambda k: (k.device, k.point))

    def latest(self, devices: Iterable[str] | None = None) -> list[Reading]:
        self.latest_calls.append(None if devices is None else list(devices))
        if self.fail:
            raise self.fail
        newest: dict[tuple[str, str], Reading] = {}
        for r in self.readings:
            if devices is not None and r.device not in devices:
                continue
            key = (r.device, r.point)
            if key not in newest or r.ts >= newest[key].ts:
                newest[key] = r
        return list(newest.values())

    def query(self, device: str, point: str, start: float, end: float, max_points: int) -> list[Bucket]:
        self.query_calls.append((device, point, start, end, max_points))
        if self.fail:
            raise self.fail
        return list(self.buckets)

    def close(self) -> None:
        pass


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = T0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def write_site(directory: Path, devices: list[dict], rooms: list[dict] | None = None,
               name: str = "Test site", refresh_s: float = 2) -> Path:
    """A site file of Modbus T/H sensors (no credentials needed); JSON is valid YAML."""
    rooms = rooms or [{"id": "dh1", "name": "Data hall 1"}]
    config = {
        "site": {"id": "test", "name": name},
        "rooms": rooms,
        "devices": [
            {"class": "thsensor", "profile": "thsensor/generic_xymd02", "room": rooms[0]["id"], "host": "127.0.0.1",
             "port": 15020, "modbus": {"unit_id": index + 1}, "poll_interval_s": 2, **device}
            for index, device in enumerate(devices)
        ],
        "dashboard": {"refresh_s": refresh_s},
    }
    path = directory / "site.yaml"
    path.write_text(json.dumps(config, indent=2), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def demo_site() -> Site:
    return load_site(DEMO_CONFIG)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def site_factory(tmp_path):
    def make(devices: list[dict], **kwargs) -> Site:
        return load_site(write_site(tmp_path, devices, **kwargs))
    return make


@pytest.fixture
def fake_store() -> FakeStore:
    return FakeStore()


PLANT_CONFIG = ROOT / "config" / "sites" / "demo.yaml"  # every device class: power chain, rooms, fire


@pytest.fixture(scope="session")
def plant_site() -> Site:
    return load_site(PLANT_CONFIG)


@pytest.fixture(scope="session")
def default_rules():
    from alerts.rules import load_rules

    return tuple(load_rules())
