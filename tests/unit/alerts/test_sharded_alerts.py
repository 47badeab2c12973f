"""One dashboard over a sharded site: alert state and operator actions merged over real shard SQLite files.

Each shard file is written by the real AlertEngine / ActionStore / CommandApplier of that shard (the
skeleton site split 2 ways: dh1-rack-a02-inlet → shard 1, dh1-ups-a → shard 2), on a fake clock.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from alerts.commands import ActionStore, CommandApplier, Heartbeat
from alerts.engine import AlertEngine
from alerts.model import AlertState
from alerts.rules import load_rules
from alerts.sharded import (
    ShardCountAmbiguous,
    ShardedActions,
    ShardedAlertState,
    ShardSet,
    ShardUnavailable,
    discover_shard_count,
    shard_files,
)
from alerts.state import AlertStateStore
from collectors.model import Reading
from collectors.sharding import Shard, shard_of, shard_site
from config.load import Site, load_site
from dashboard.live import Snapshot
from dashboard.status import banner
from tests.conftest import SKELETON_CONFIG

T0 = 1_800_000_000.0
INLET, UPS = "dh1-rack-a02-inlet", "dh1-ups-a"  # shard 1/2 and shard 2/2
READINGS = {1: Reading(INLET, "ambient.temperature", T0, 40.0),
            2: Reading(UPS, "output.source", T0, 5.0, text="battery")}


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        return self.t


class ShardProcess:
    """What ``collect --shard i/2`` keeps in its file: an engine, its commands and their applier."""

    def __init__(self, site: Site, shard: Shard, path: Path, clock: Clock):
        part = shard_site(site, shard)
        self.actions = ActionStore(path, clock)
        self.engine = AlertEngine(part, load_rules(), AlertStateStore(path), clock)
        self.applier = CommandApplier(self.actions, self.engine)
        self.engine.observe([READINGS[shard.index]])
        self.engine.tick(clock.t)
        self.actions.beat("collector", clock.t)
        self.actions.beat("alerting", clock.t)

    def fingerprint(self) -> str:
        return next(a.fingerprint for a in self.engine.alerts() if a.state in (AlertState.PENDING, AlertState.FIRING))


@pytest.fixture
def site() -> Site:
    site = load_site(SKELETON_CONFIG)
    assert (shard_of(INLET, 2), shard_of(UPS, 2)) == (1, 2)
    return site


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def storage(tmp_path: Path) -> Path:
    return tmp_path / "facwatch.db"


@pytest.fixture
def shards(site: Site, storage: Path, clock: Clock) -> dict[int, ShardProcess]:
    return {shard.index: ShardProcess(site, shard, path, clock)
            for shard, path in shard_files(storage, None, 2).items()}


@pytest.fixture
def merged(storage: Path, clock: Clock, shards) -> tuple[ShardedAlertState, ShardedActions]:
    shard_set = ShardSet.open(shard_files(storage, None, 2), clock)
    state = ShardedAlertState(shard_set)
    yield state, ShardedActions(shard_set, state)
    shard_set.close()


def test_alerts_of_every_shard_are_listed_once(merged, shards) -> None:
    state, _ = merged
    devices = sorted(a.labels["device"] for a in state.load().values())
    assert devices == sorted([INLET, UPS])
    fp = shards[2].fingerprint()
    assert state.get(fp).labels["device"] == UPS
    assert [to for _, to, _ in state.transitions(fp)] == [a for _, a, _ in shards[2].engine.store.transitions(fp)]
    assert {row[0] for row in state.recent_transitions(10)} == {a.rule for a in state.load().values()}
    assert state.unavailable_shards() == ()


def test_an_ack_reaches_the_shard_that_owns_the_device(merged, shards) -> None:
    _, actions = merged
    fp = shards[2].fingerprint()
    actions.request_ack(fp, "alice", "on it", source="10.0.0.7")
    assert shards[1].actions.pending() == []
    [command] = shards[2].applier.apply_pending()
    assert (command.kind, command.outcome, command.source) == ("ack", "applied", "10.0.0.7")
    assert shards[2].engine.store.get(fp).acknowledged_by == "alice"
    assert [c.outcome for c in actions.history()] == ["applied"]


def test_an_ack_of_an_unknown_alert_is_refused_before_anything_is_written(merged, shards) -> None:
    _, actions = merged
    with pytest.raises(ValueError, match="no shard holds"):
        actions.request_ack("0123456789abcdef", "alice")
    assert shards[1].actions.history() == shards[2].actions.history() == []


def test_a_silence_goes_to_every_shard_is_listed_once_and_expires_everywhere(merged, shards, clock) -> None:
    _, actions = merged
    shards[2].actions.request_silence({"device": UPS}, T0 + 60, "older, shard 2 only", "bob")
    shards[2].applier.apply_pending()  # shard 2 now numbers its silences one ahead of shard 1
    actions.request_silence({"room": "dh1"}, T0 + 3600, "cooling work", "alice", source="10.0.0.7")
    for shard in shards.values():
        [applied] = shard.applier.apply_pending()
        assert applied.outcome == "applied"
    listed = actions.silences()
    assert sorted(s.reason for s in listed) == ["cooling work", "older, shard 2 only"]
    assert [c.kind for c in actions.history()].count("silence") == 2  # the fanned-out one once
    shown = next(s for s in listed if s.reason == "cooling work")
    actions.request_expire(shown.id, "carol")
    for shard in shards.values():
        [expired] = shard.applier.apply_pending()
        assert expired.outcome == "applied", expired.detail
    clock.t += 1
    [left] = actions.silences()
    assert (left.id, left.reason) == (2_000_001, "older, shard 2 only")  # shard 2's own #1, never shard 1's
    assert all(s.reason != "cooling work" for shard in shards.values() for s in shard.actions.silences())
    actions.request_expire(left.id, "carol")
    assert shards[1].actions.pending() == []
    [expired] = shards[2].applier.apply_pending()
    assert (expired.outcome, expired.payload["silence_id"]) == ("applied", 1)


def test_heartbeats_are_named_per_shard_and_the_banner_names_the_quiet_one(site, merged, shards, clock) -> None:
    _, actions = merged
    clock.t += 120
    shards[1].actions.beat("collector", clock.t)
    shards[1].actions.beat("alerting", clock.t)
    beats = actions.heartbeats()
    assert set(beats) == {"collector@1-of-2", "alerting@1-of-2", "collector@2-of-2", "alerting@2-of-2"}
    texts = [m.text for m in banner(Snapshot(site, clock.t, (), None, heartbeats=beats))]
    down = [t for t in texts if "DOWN" in t]
    assert [t.split(" since ")[0] for t in down] == ["COLLECTOR 2/2 DOWN", "ALERT ENGINE 2/2 DOWN"]


def test_the_unsharded_banner_wording_is_unchanged(site) -> None:
    beats = {"collector": Heartbeat("collector", T0, 1, "h")}
    [message] = [m for m in banner(Snapshot(site, T0 + 60, (), None, heartbeats=beats)) if m.kind == "down"]
    assert message.text.startswith("COLLECTOR DOWN since ")


def test_a_missing_shard_file_is_unavailable_not_created_and_not_no_alerts(site, storage, clock, tmp_path) -> None:
    paths = shard_files(storage, None, 2)
    ShardProcess(site, Shard(1, 2), paths[Shard(1, 2)], clock)
    state = ShardedAlertState(ShardSet.open(paths, clock))
    assert [a.labels["device"] for a in state.load().values()] == [INLET]
    assert state.unavailable_shards() == ("2/2",)
    assert not paths[Shard(2, 2)].exists()
    texts = [m.text for m in banner(Snapshot(site, T0, (), None, unavailable_shards=state.unavailable_shards()))]
    assert any(t.startswith("SHARD 2/2 UNAVAILABLE") for t in texts)


def test_a_corrupt_shard_file_is_unavailable_and_silences_are_refused(site, storage, clock, shards) -> None:
    paths = shard_files(storage, None, 2)
    for suffix in ("-wal", "-shm"):
        Path(f"{paths[Shard(2, 2)]}{suffix}").unlink(missing_ok=True)
    shards[2].engine.store.close()
    shards[2].actions.close()
    paths[Shard(2, 2)].write_bytes(b"this is not a database" * 100)
    shard_set = ShardSet.open(paths, clock)
    state = ShardedAlertState(shard_set)
    actions = ShardedActions(shard_set, state)
    assert [a.labels["device"] for a in state.load().values()] == [INLET]
    assert set(actions.heartbeats()) == {"collector@1-of-2", "alerting@1-of-2"}
    assert actions.unavailable_shards() == ("2/2",)
    with pytest.raises(ValueError, match="cannot reach every shard, nothing was sent"):
        actions.request_silence({"room": "dh1"}, T0 + 3600, "cooling work", "alice")
    assert shards[1].actions.history() == []


def test_reading_fails_when_no_shard_can_be_read(storage, clock) -> None:
    state = ShardedAlertState(ShardSet.open(shard_files(storage, None, 2), clock))
    with pytest.raises(ShardUnavailable):
        state.load()


def test_shard_files_are_discovered_next_to_the_store_and_under_the_data_dir(tmp_path) -> None:
    storage = tmp_path / "var" / "facwatch.db"
    assert discover_shard_count(storage, None) is None
    storage.parent.mkdir()
    for path in shard_files(storage, None, 3).values():
        path.touch()
    assert discover_shard_count(storage, None) == 3
    shard_files(storage, None, 2)[Shard(1, 2)].touch()
    with pytest.raises(ShardCountAmbiguous, match="--shards"):
        discover_shard_count(storage, None)
    data_dir = tmp_path / "data"
    for path in shard_files(storage, data_dir, 2).values():
        path.parent.mkdir(parents=True)
        path.touch()
    assert discover_shard_count(storage, data_dir) == 2
    assert shard_files(storage, data_dir, 2)[Shard(2, 2)] == data_dir / "shard-2-of-2" / "facwatch.db"


def test_the_alerts_page_shows_both_shards_and_acks_through_the_owning_shard(site, merged, shards, clock) -> None:
    from datetime import UTC

    from dashboard.data import DashboardSources
    from dashboard.live import LiveCache
    from dashboard.pages import PageContext
    from dashboard.pages.alerts import AlertsPage
    from tests.unit.dashboard.conftest import FakeStore

    state, actions = merged
    sources = DashboardSources(site, FakeStore(), clock=clock, alerts=state, actions=actions)
    cache = LiveCache(sources, rules=())
    page = AlertsPage(PageContext(sources, UTC, cache))
    assert sorted(a.labels["device"] for a in page.model().alerts.values()) == sorted([INLET, UPS])
    assert len(page.model().history) == 2
    fp = shards[1].fingerprint()
    assert "requested" in str(page.acknowledge(1, "alice", fp, "on it"))
    assert [c.kind for c in shards[1].actions.pending()] == ["ack"] and shards[2].actions.pending() == []
    assert cache.snapshot().unavailable_shards == ()


def test_the_dashboard_command_prints_the_shard_files_it_reads_and_refuses_an_ambiguous_split(
        site, tmp_path, capsys) -> None:
    from facwatch.cli import _dashboard_shards

    assert _dashboard_shards(site, tmp_path, None) is None  # no shard files: the unsharded site, as before
    for path in shard_files(site.storage_path(), tmp_path, 2).values():
        path.parent.mkdir()
        ActionStore(path).close()
    shard_set = _dashboard_shards(site, tmp_path, None)
    assert [f.name for f in shard_set.files] == ["1/2", "2/2"]
    out = capsys.readouterr().out
    assert str(tmp_path / "shard-2-of-2" / "facwatch.db") in out and "missing" not in out
    assert "missing: shown as unavailable" in (_dashboard_shards(site, tmp_path, 3), capsys.readouterr().out)[1]
    (tmp_path / "shard-1-of-3").mkdir()
    ActionStore(tmp_path / "shard-1-of-3" / "facwatch.db").close()
    with pytest.raises(ShardCountAmbiguous, match="say which with --shards N"):
        _dashboard_shards(site, tmp_path, None)
    assert _dashboard_shards(site, tmp_path, 1) is None
