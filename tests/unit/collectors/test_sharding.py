"""Shards: every device polled by exactly one shard, stably and evenly; a shard's site holds only its devices."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from alerts.engine import AlertEngine
from alerts.rules import load_rules
from alerts.state import AlertStateStore
from collectors.model import Reading
from collectors.sharding import POWER_CHAIN, Shard, assignment, plan_shards, shard_of, shard_path, shard_site
from config.load import Site, load_site

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "tests" / "data" / "sites" / "influx_example.yaml"


@pytest.fixture
def site(monkeypatch: pytest.MonkeyPatch) -> Site:
    monkeypatch.setenv("FACWATCH_INFLUX_TOKEN", "test-token")
    return load_site(EXAMPLE)


@pytest.mark.parametrize(("text", "expected"), [("1/2", Shard(1, 2)), (" 3 / 3 ", Shard(3, 3)), ("1/1", Shard(1, 1))])
def test_shard_is_parsed_from_i_slash_n(text: str, expected: Shard) -> None:
    assert Shard.parse(text) == expected


@pytest.mark.parametrize(("text", "message"), [("0/2", "index must be 1–2"), ("3/2", "index must be 1–2"),
                                               ("1/0", "count must be"), ("2", "written i/n"), ("a/b", "written i/n"),
                                               ("-1/2", "written i/n")])
def test_bad_shard_is_refused_with_a_readable_message(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Shard.parse(text)


def test_assignment_is_a_fixed_function_of_the_device_id() -> None:
    # sha256, not hash(): these values are part of the deployed behaviour and must never change
    assert [shard_of(d, 3) for d in ("dh1-ups-a", "ups-b", "dh1-crac-1", "gen-1")] == [1, 2, 3, 1]


def test_assignment_is_the_same_in_another_process_with_another_hash_seed() -> None:
    ids = [f"dh{i}-rack-{i:03d}-inlet" for i in range(50)]
    code = ("import sys; from collectors.sharding import shard_of; "
            "print(','.join(str(shard_of(d, 4)) for d in sys.argv[1:]))")
    env = os.environ | {"PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code, *ids], capture_output=True, text=True, env=env, cwd=ROOT,
                         check=True).stdout.strip()
    assert out == ",".join(str(shard_of(d, 4)) for d in ids)


def test_every_device_is_polled_by_exactly_one_shard() -> None:
    ids = [f"dev-{i}" for i in range(1000)]
    for count in (1, 2, 3, 7):
        owners = [[index for index in range(1, count + 1) if Shard(index, count).owns(d)] for d in ids]
        assert all(len(o) == 1 for o in owners)
        assert sorted(d for devices in assignment(ids, count).values() for d in devices) == sorted(ids)


@pytest.mark.parametrize("count", [2, 3, 4, 8])
def test_shards_are_balanced(count: int) -> None:
    sizes = [len(devices) for devices in assignment([f"dh1-rack-{i:05d}-inlet" for i in range(20_000)],
                                                    count).values()]
    mean = statistics.mean(sizes)
    assert max(abs(size - mean) for size in sizes) < 0.05 * mean, sizes


def test_adding_a_device_moves_no_other_device() -> None:
    before = assignment([f"dev-{i}" for i in range(200)], 3)
    after = assignment([f"dev-{i}" for i in range(201)], 3)
    for index in before:
        assert set(before[index]) <= set(after[index])


def test_shard_path_keeps_folder_and_suffix() -> None:
    assert shard_path("var/facwatch.db", Shard(2, 3)) == Path("var/facwatch.shard-2-of-3.db")


def test_shard_site_holds_only_its_devices_and_files_of_its_own(site: Site) -> None:
    one, two = shard_site(site, Shard(1, 2)), shard_site(site, Shard(2, 2))

    assert {d.id for d in one.devices} | {d.id for d in two.devices} == {d.id for d in site.devices}
    assert not {d.id for d in one.devices} & {d.id for d in two.devices}
    assert all(Shard(1, 2).owns(d.id) for d in one.devices)
    assert set(one.profiles) == {d.profile for d in one.devices}
    assert len({site.storage_path(), one.storage_path(), two.storage_path()}) == 3
    assert one.storage_path().name == "influx-example.shard-1-of-2.db"
    assert site.influx is not None and one.influx is not None and two.influx is not None
    assert len({site.influx.spool_path, one.influx.spool_path, two.influx.spool_path}) == 3
    assert one.influx.write_token.reveal() == "test-token"
    assert one.config.site == site.config.site and one.config.rooms == site.config.rooms


def test_one_shard_of_one_is_the_whole_site(site: Site) -> None:
    assert shard_site(site, Shard(1, 1)) is site


def test_exactly_one_shard_keeps_the_trap_listener(tmp_path: Path) -> None:
    config = tmp_path / "site.yaml"
    config.write_text(EXAMPLE.read_text().replace("{env: FACWATCH_INFLUX_TOKEN}", "{file: token}")
                      .replace("../../../config/", f"{ROOT}/config/") + "traps: {listen: '127.0.0.1:30898'}\n")
    (tmp_path / "token").write_text("t")
    site = load_site(config)
    assert site.config.traps is not None
    for count in (2, 3):  # without rules: the shard of the power chain the evidence detectors read together
        listening = [i for i in range(1, count + 1) if shard_site(site, Shard(i, count)).config.traps is not None]
        [chain] = [group for group in plan_shards(site, count).groups if POWER_CHAIN in group.rules]
        assert listening == [chain.shard(count)]


def test_the_alert_engine_of_a_shard_ignores_the_other_shards_devices(site: Site, tmp_path: Path) -> None:
    one = shard_site(site, Shard(1, 2))
    foreign = next(d.id for d in site.devices if not Shard(1, 2).owns(d.id))
    state = AlertStateStore(tmp_path / "alerts.db")
    try:
        engine = AlertEngine(one, load_rules(), state, clock=lambda: 1000.0)
        assert engine.observe([Reading(foreign, "device.reachable", 1000.0, 0.0)]) == []
        assert foreign not in engine.devices
        assert all(key[0] != foreign for key in engine.latest)
    finally:
        state.close()
