"""Shard groups: devices that a rule combines land in one shard; the other shards never evaluate that rule."""

from __future__ import annotations

import pytest

from alerts.engine import AlertEngine
from alerts.rules import Rule, load_rules
from alerts.state import AlertStateStore
from collectors.model import Quality, Reading
from collectors.sharding import (
    POWER_CHAIN,
    Shard,
    assignment,
    combined_devices,
    plan_shards,
    shard_of,
    shard_site,
)
from config.load import Site, load_site
from tests.conftest import DEMO_CONFIG, ROOT

SITE_FILES = [DEMO_CONFIG, *sorted((ROOT / "tests" / "data" / "sites").glob("*.yaml"))]
# the default rules that combine devices, and the device classes they read (config/rules/default.yaml)
COMBINING = {"mains_failure": {"ats", "ups"}, "ups_ring_redundancy_lost": {"ups"},
             "zone_disabled_while_armed": {"preaction", "firepanel"},
             POWER_CHAIN: {"ats", "genset", "ups"}}  # what the evidence detectors read together
SITE_RULES = ("mains_failure", "ups_ring_redundancy_lost")
MAINS_UNAVAILABLE, MAINS_AVAILABLE = 0.0, 1.0  # ats/facwatch_ats ats.mains_available


@pytest.fixture(scope="module")
def rules() -> list[Rule]:
    return load_rules()


@pytest.fixture(scope="module", params=SITE_FILES, ids=lambda path: path.stem)
def any_site(request: pytest.FixtureRequest) -> Site:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FACWATCH_INFLUX_TOKEN", "test-token")  # influx_example.yaml reads it
        return load_site(request.param)


@pytest.fixture(scope="module")
def demo() -> Site:
    return load_site(DEMO_CONFIG)


def shards_of(site: Site, count: int, rules: list[Rule]) -> list[Site]:
    return [shard_site(site, Shard(index, count), rules) for index in range(1, count + 1)]


def owner(parts: list[Site], device: str) -> int:
    (index,) = [i for i, part in enumerate(parts, 1) if device in {d.id for d in part.devices}]
    return index


def test_combining_rules_are_found_by_what_they_read(demo: Site, rules: list[Rule]) -> None:
    found = {rule.name: combined_devices(demo, rule) for rule in rules if len(combined_devices(demo, rule)) > 1}
    assert found == {"mains_failure": {"ats-1", "ups-a", "ups-b"}, "ups_ring_redundancy_lost": {"ups-a", "ups-b"},
                     "zone_disabled_while_armed": {"dh1-preaction", "fire-panel"}}


@pytest.mark.parametrize("count", [1, 2, 3, 4, 5])
def test_every_device_is_in_exactly_one_shard(any_site: Site, rules: list[Rule], count: int) -> None:
    parts = shards_of(any_site, count, rules)
    polled = [d.id for part in parts for d in part.devices]
    assert sorted(polled) == sorted(d.id for d in any_site.devices)
    for part in parts:
        assert set(part.profiles) == {d.profile for d in part.devices}


@pytest.mark.parametrize("count", [1, 2, 3, 4, 5])
def test_devices_a_rule_combines_share_one_shard(any_site: Site, rules: list[Rule], count: int) -> None:
    parts = shards_of(any_site, count, rules)
    for classes in COMBINING.values():
        together = {owner(parts, d.id) for d in any_site.devices if d.device_class in classes}
        assert len(together) <= 1, classes


@pytest.mark.parametrize("count", [1, 2, 3, 4, 5])
def test_devices_in_no_group_keep_their_plain_hash_shard(any_site: Site, rules: list[Rule], count: int) -> None:
    parts = shards_of(any_site, count, rules)
    grouped = {d for group in plan_shards(any_site, count, rules).groups for d in group.devices}
    loose = [d.id for d in any_site.devices if d.id not in grouped]
    assert grouped <= {d.id for d in any_site.devices if d.device_class in set().union(*COMBINING.values())}
    assert all(owner(parts, device) == shard_of(device, count) for device in loose)


@pytest.mark.parametrize("count", [2, 3, 4, 5])
def test_exactly_one_shard_listens_for_traps_the_one_with_the_power_chain(demo: Site, rules: list[Rule],
                                                                         count: int) -> None:
    parts = shards_of(demo, count, rules)
    listening = [i for i, part in enumerate(parts, 1) if part.config.traps is not None]
    assert listening == [owner(parts, "ats-1")]
    assert demo.config.traps is not None and parts[listening[0] - 1].config.traps == demo.config.traps


def test_without_rules_only_the_power_chain_is_kept_together_and_has_the_traps(demo: Site) -> None:
    parts = shards_of(demo, 3, [])
    chain = [d.id for d in demo.devices if d.device_class in COMBINING[POWER_CHAIN]]
    assert {owner(parts, device) for device in chain} == {shard_of(min(chain), 3)}
    assert [i for i, part in enumerate(parts, 1) if part.config.traps is not None] == [shard_of(min(chain), 3)]
    assert all(owner(parts, d.id) == shard_of(d.id, 3) for d in demo.devices if d.id not in chain)


def test_a_group_goes_to_the_shard_of_its_smallest_device_id() -> None:
    ids = ["b", "a", "c", "d"]
    plain = assignment(ids, 4)
    grouped = assignment(ids, 4, [{"c", "b"}])
    where = {d: i for i, devices in grouped.items() for d in devices}
    assert where["b"] == where["c"] == shard_of("b", 4)
    assert where["a"] == shard_of("a", 4) and where["d"] == shard_of("d", 4)
    assert sorted(d for devices in plain.values() for d in devices) == sorted(ids)


def test_the_plan_names_the_rules_it_keeps_together(demo: Site, rules: list[Rule]) -> None:
    plan = plan_shards(demo, 2, rules)
    power = shard_of("ats-1", 2)
    text = plan.describe(power)
    assert text.startswith(f"shard {power}/2: {len(plan.devices(power))} devices (")
    assert "mains_failure" in text and "ups_ring_redundancy_lost" in text


# -- the engine of each shard ----------------------------------------------------------------------------

def rd(device: str, point: str, ts: float, value: float | None) -> Reading:
    return Reading(device, point, ts, value, Quality.GOOD if value is not None else Quality.MISSING)


def engine_of(part: Site, rules: list[Rule], clock: list[float]) -> AlertEngine:
    return AlertEngine(part, rules, AlertStateStore(":memory:"), clock=lambda: clock[0])


def about(engine: AlertEngine, names: tuple[str, ...]) -> list[str]:
    """Every alert (any state) the engine tracks for these rules."""
    return [track.alert.rule for track in engine.tracks.values() if track.alert.rule in names]


def test_a_shard_without_the_power_chain_never_evaluates_the_site_rules(demo: Site, rules: list[Rule]) -> None:
    power = shard_of("ats-1", 2)
    other = shard_site(demo, Shard(3 - power, 2), rules)
    assert not {"ats-1", "ups-a", "ups-b"} & {d.id for d in other.devices}
    clock = [1000.0]
    engine = engine_of(other, rules, clock)
    changed = []
    for step in range(200):  # its own devices answer; the power chain's readings arrive here too (a stray trap)
        ts = 1000.0 + 2 * step
        clock[0] = ts
        changed += engine.observe([rd(d.id, "device.reachable", ts, 1.0) for d in other.devices])
        changed += engine.observe([rd("ats-1", "ats.mains_available", ts, MAINS_UNAVAILABLE),
                                   rd("ups-a", "ups.load", ts, 99.0), rd("ups-b", "ups.load", ts, 99.0)])
        changed += engine.tick(ts)
    assert about(engine, SITE_RULES) == [] and [a for a in changed if a.rule in SITE_RULES] == []
    # and no missing-data alert stands in for them: nothing about the power chain at all
    assert [a for a in changed if a.labels.get("device") in {"ats-1", "ups-a", "ups-b"}] == []
    assert [a.rule for a in engine.alerts()] == []


def test_the_shard_with_the_power_chain_fires_mains_failure_and_ring_redundancy(demo: Site,
                                                                                rules: list[Rule]) -> None:
    power = shard_site(demo, Shard(shard_of("ats-1", 2), 2), rules)
    clock = [1000.0]
    engine = engine_of(power, rules, clock)
    engine.observe([rd("ats-1", "ats.mains_available", 1000.0, MAINS_AVAILABLE)])
    assert engine.alerts() == []
    changed = engine.observe([rd("ats-1", "ats.mains_available", 1002.0, MAINS_UNAVAILABLE)])
    assert [(a.rule, a.state.value, dict(a.labels)) for a in changed if a.rule == "mains_failure"] == [
        ("mains_failure", "firing", {"site": "demo"})]
    for step in range(160):  # both rings at 99 % of their own 80 kW: 198 % of one ring, for over 5 min
        ts = 1004.0 + 2 * step
        clock[0] = ts
        engine.observe([rd("ups-a", "ups.load", ts, 99.0), rd("ups-b", "ups.load", ts, 99.0)])
        engine.tick(ts)
    ring = [a for a in engine.alerts() if a.rule == "ups_ring_redundancy_lost"]
    assert [(a.state.value, a.severity.value) for a in ring] == [("firing", "critical")]


def test_plain_hashing_would_split_the_power_chain_for_some_count(demo: Site) -> None:
    # why groups exist: by hash alone the ATS and the UPSs do not always share a shard
    assert any(len({shard_of(d, n) for d in ("ats-1", "ups-a", "ups-b")}) > 1 for n in range(2, 6))


def test_shard_site_without_rules_hashes_every_device_outside_the_power_chain(demo: Site) -> None:
    one = shard_site(demo, Shard(1, 2))
    loose = [d.id for d in demo.devices if d.device_class not in COMBINING[POWER_CHAIN]]
    assert [d for d in (d.id for d in one.devices) if d in loose] == [d for d in loose if shard_of(d, 2) == 1]


