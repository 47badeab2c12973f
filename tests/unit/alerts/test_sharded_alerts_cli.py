"""`facwatch alerts list|ack|silence|silences|expire|history` on a sharded site, run in-process.

The shard files are written by the real engine, ActionStore and CommandApplier of each shard (the
skeleton site split 2 ways under --data-dir: dh1-rack-a02-inlet → shard 1, dh1-ups-a → shard 2), on a
clock at the real time because the CLI stamps its requests with it. An unsharded site is checked too:
its output is what it always was.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from alerts.commands import ActionStore, CommandApplier
from alerts.engine import AlertEngine
from alerts.model import AlertState
from alerts.rules import load_rules
from alerts.sharded import shard_files
from alerts.state import AlertStateStore
from collectors.model import Reading
from collectors.sharding import Shard
from config.load import Site, load_site
from facwatch import cli
from tests.conftest import SKELETON_CONFIG
from tests.unit.alerts.test_sharded_alerts import INLET, READINGS, UPS, Clock, ShardProcess


@pytest.fixture
def site() -> Site:
    return load_site(SKELETON_CONFIG)


@pytest.fixture
def clock() -> Clock:
    now = Clock()
    now.t = time.time()
    return now


@pytest.fixture
def shards(site: Site, tmp_path: Path, clock: Clock) -> dict[int, ShardProcess]:
    made = {}
    for shard, path in shard_files(site.storage_path(), tmp_path, 2).items():
        path.parent.mkdir()
        made[shard.index] = ShardProcess(site, shard, path, clock)
    return made


def alerts(tmp_path: Path, capsys, *args: str) -> tuple[int, str, str]:
    code = cli.main(["alerts", *args, "-c", str(SKELETON_CONFIG), "--data-dir", str(tmp_path)])
    out, err = capsys.readouterr()
    return code, out, err


def row(out: str, text: str) -> list[str]:
    return next(line.split() for line in out.splitlines() if text in line)


def test_list_shows_the_alerts_of_every_shard_and_the_shard_holding_each(shards, tmp_path, capsys) -> None:
    code, out, err = alerts(tmp_path, capsys, "list")
    assert code == 0, err
    header = out.splitlines()[0].split()
    assert header[-2:] == ["SHARD", "LABELS"]
    assert row(out, f"device={INLET}")[0] == shards[1].fingerprint()
    assert f"2/2 device={UPS}" in " ".join(row(out, f"device={UPS}"))
    assert f"1/2 device={INLET}" in " ".join(row(out, f"device={INLET}"))


def test_an_ack_by_prefix_goes_to_the_shard_that_holds_the_alert(shards, tmp_path, capsys) -> None:
    fp = shards[2].fingerprint()
    code, out, err = alerts(tmp_path, capsys, "ack", fp[:8], "--by", "alice", "--note", "on it")
    assert code == 0, err
    assert out.startswith(f"command queued in shard 2/2 as #1: acknowledge {fp}.")
    assert "warning" not in err  # both alerting loops beat just now
    assert shards[1].actions.pending() == []
    [applied] = shards[2].applier.apply_pending()
    assert (applied.kind, applied.outcome, applied.author) == ("ack", "applied", "alice")
    code, out, _ = alerts(tmp_path, capsys, "list")
    assert "alice" in row(out, f"device={UPS}")


def test_wait_names_the_shard_of_each_outcome(shards, capsys) -> None:
    command_id = shards[2].actions.request_ack(shards[2].fingerprint(), "alice")
    shards[2].applier.apply_pending()
    history = lambda: shards[2].actions.history(50)  # noqa: E731
    assert cli._wait([cli._Sent(command_id, history, Shard(2, 2))]) == 0
    assert capsys.readouterr().out.startswith(f"shard 2/2: command #{command_id} applied: acknowledged")


def test_a_silence_goes_to_every_shard_is_listed_once_and_expires_everywhere(shards, tmp_path, capsys) -> None:
    code, out, err = alerts(tmp_path, capsys, "silence", "--match", "room=dh1", "--for", "1h", "--reason",
                            "cooling work CHG-7", "--by", "bob")
    assert code == 0, err
    assert out.startswith("command queued in shard 1/2 as #1 and 2/2 as #1: silence of room=dh1 until ")
    for shard in shards.values():
        [applied] = shard.applier.apply_pending()
        assert applied.outcome == "applied", applied.detail
    code, out, _ = alerts(tmp_path, capsys, "silences")
    [listed] = [line for line in out.splitlines()[1:] if line.strip()]
    assert listed.split()[:3] == ["1", "silence", "active"] and "cooling work CHG-7" in listed
    code, out, err = alerts(tmp_path, capsys, "expire", "1", "--by", "carol")
    assert code == 0, err
    for shard in shards.values():
        [expired] = shard.applier.apply_pending()
        assert expired.outcome == "applied", expired.detail
    code, out, _ = alerts(tmp_path, capsys, "history")
    actions = [line for line in out.splitlines()[1:] if line.strip()]
    assert len(actions) == 2  # the fanned-out silence and its expiry, each once
    assert "expire silence" in actions[0] and "carol" in actions[0] and "cooling work CHG-7" in actions[1]


def test_a_silence_is_refused_when_a_shard_cannot_be_reached_and_list_names_the_missing_shard(
        site, tmp_path, clock, capsys) -> None:
    paths = shard_files(site.storage_path(), tmp_path, 2)
    paths[Shard(1, 2)].parent.mkdir()
    first = ShardProcess(site, Shard(1, 2), paths[Shard(1, 2)], clock)
    code, _, err = alerts(tmp_path, capsys, "silence", "--match", "room=dh1", "--for", "1h", "--reason", "x",
                          "--by", "bob", "--shards", "2")
    assert code == 2 and "cannot reach every shard, nothing was sent" in err
    assert first.actions.history() == []
    code, out, err = alerts(tmp_path, capsys, "list", "--shards", "2")
    assert code == 0 and f"device={INLET}" in out and UPS not in out
    assert "warning: shard 2/2 could not be read" in err
    assert not paths[Shard(2, 2)].exists()  # never created by a reader


def test_shard_files_of_two_splits_are_refused_until_shards_says_which(shards, site, tmp_path, capsys) -> None:
    extra = shard_files(site.storage_path(), tmp_path, 3)[Shard(1, 3)]
    extra.parent.mkdir()
    ActionStore(extra).close()
    code, _, err = alerts(tmp_path, capsys, "list")
    assert code == 2 and "say which with --shards N" in err
    code, out, _ = alerts(tmp_path, capsys, "list", "--shards", "2")
    assert code == 0 and f"device={UPS}" in out


def test_no_shard_file_at_all_is_a_usage_error(tmp_path, capsys) -> None:
    code, _, err = alerts(tmp_path, capsys, "history", "--shards", "2")
    assert code == 2 and "no shard file of a 2-way split" in err


# --- an unsharded site: as before --------------------------------------------------------------------

@pytest.fixture
def single(site: Site, tmp_path: Path, clock: Clock) -> tuple[AlertEngine, CommandApplier]:
    path = tmp_path / "facwatch.db"
    actions = ActionStore(path, clock)
    engine = AlertEngine(site, load_rules(), AlertStateStore(path), clock)
    engine.observe([READINGS[2], Reading(INLET, "ambient.temperature", clock.t, 40.0)])
    engine.tick(clock.t)
    actions.beat("alerting", clock.t)
    return engine, CommandApplier(actions, engine)


def test_an_unsharded_site_lists_and_acks_as_before(single, tmp_path, capsys) -> None:
    engine, applier = single
    code, out, _ = alerts(tmp_path, capsys, "list")
    assert code == 0 and out.splitlines()[0].split() == ["FINGERPRINT", "RULE", "STATE", "SEVERITY", "SINCE",
                                                         "ACKED", "BY", "LABELS"]
    fp = next(a.fingerprint for a in engine.alerts() if a.state in (AlertState.PENDING, AlertState.FIRING)
              and a.labels["device"] == UPS)
    code, out, err = alerts(tmp_path, capsys, "ack", fp, "--by", "alice")
    assert code == 0 and out.startswith(f"command #1 queued: acknowledge {fp}. The running collector applies it")
    assert err == ""
    [applied] = applier.apply_pending()
    assert applied.outcome == "applied"
    code, out, _ = alerts(tmp_path, capsys, "history")
    assert "ack " + fp in out and "applied" in out


def test_an_unsharded_site_without_its_file_says_so(tmp_path, capsys) -> None:
    code, _, err = alerts(tmp_path, capsys, "list")
    assert code == 2 and "no facwatch store at" in err and not (tmp_path / "facwatch.db").exists()
