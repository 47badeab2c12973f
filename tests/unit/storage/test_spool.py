from __future__ import annotations

import logging
import sqlite3

import pytest

from storage.spool import Spool, SpoolBatch, SpoolLevel


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def spool(tmp_path, clock):
    with Spool(tmp_path / "spool.db", max_lines=100, clock=clock, wall_clock=lambda: 1_767_225_600.0) as s:
        yield s


def lines(n: int, prefix: str = "m v=") -> list[str]:
    return [f"{prefix}{i}.0 {i}" for i in range(n)]


def test_lines_come_out_in_arrival_order_until_acknowledged(spool):
    spool.append(lines(5))
    batch = spool.read(after=0, limit=3)
    assert batch.lines == tuple(lines(3))
    assert spool.read(after=batch.last, limit=10).lines == tuple(lines(5)[3:])
    spool.ack(batch)
    assert spool.pending == 2
    assert spool.read(after=0, limit=10).lines == tuple(lines(5)[3:])


def test_empty_spool_reads_none(spool):
    assert spool.read(after=0, limit=10) is None
    assert spool.append([]) == 0


def test_appended_lines_survive_a_reopen(tmp_path):
    with Spool(tmp_path / "s.db", max_lines=10) as first:
        first.append(lines(3))
    with Spool(tmp_path / "s.db", max_lines=10) as second:
        assert second.pending == 3
        assert second.read(0, 10).lines == tuple(lines(3))


def test_every_commit_is_fsynced_in_wal_mode(spool):
    assert spool._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert spool._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_ids_are_never_reused_so_a_sender_cursor_stays_valid(spool):
    spool.append(lines(2))
    batch = spool.read(0, 10)
    spool.ack(batch)
    spool.append(["new v=1.0 1"])
    assert spool.read(after=batch.last, limit=10).lines == ("new v=1.0 1",)


def test_full_spool_drops_the_oldest_lines_and_counts_them(spool):
    spool.append(lines(90))
    spool.append(lines(20, "late v="))
    assert spool.pending == 100
    assert spool.level is SpoolLevel.FULL
    assert spool.read(0, 1).lines == ("m v=10.0 10",)
    assert spool.stats().dropped == 10


def test_dropped_count_survives_a_reopen(tmp_path):
    with Spool(tmp_path / "s.db", max_lines=5) as first:
        first.append(lines(8))
    with Spool(tmp_path / "s.db", max_lines=5) as second:
        assert second.stats().dropped == 3


def test_acking_a_batch_whose_lines_were_dropped_is_harmless(spool):
    spool.append(lines(50))
    batch = spool.read(0, 50)
    spool.append(lines(100))  # drops the 50 in flight
    spool.ack(batch)
    assert spool.pending == 100


def test_near_full_warns_once_and_rearms_after_draining(spool, caplog):
    caplog.set_level(logging.WARNING, logger="storage.spool")
    spool.append(lines(79))
    assert not caplog.records
    spool.append(lines(2))
    spool.append(lines(2))
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "81% full (81 of 100 lines)" in caplog.records[0].getMessage()
    assert spool.level is SpoolLevel.NEAR_FULL
    spool.ack(spool.read(0, 30))  # down to 53: below the mark minus the margin
    spool.append(lines(30))
    assert [r.levelname for r in caplog.records] == ["WARNING", "WARNING"]


def test_dropping_is_logged_as_an_error_at_most_once_a_minute_with_the_total(spool, clock, caplog):
    caplog.set_level(logging.ERROR, logger="storage.spool")
    spool.append(lines(100))
    spool.append(lines(5))
    clock.now += 30
    spool.append(lines(7))
    assert len(caplog.records) == 1 and "dropped the 5 oldest" in caplog.records[0].getMessage()
    clock.now += 31
    spool.append(lines(1))
    assert len(caplog.records) == 2 and "dropped the 8 oldest" in caplog.records[1].getMessage()


def test_rejected_batch_moves_to_dead_letters_and_can_be_requeued(spool):
    spool.append(lines(4))
    batch = spool.read(0, 2)
    assert spool.dead_letter(batch, 400, "unable to parse") == 2
    assert spool.pending == 2
    assert spool.stats().dead_letters == 2
    assert spool.dead_letters() == [(400, "unable to parse", "m v=0.0 0"), (400, "unable to parse", "m v=1.0 1")]
    assert spool.requeue_dead_letters() == 2
    assert spool.pending == 4 and spool.stats().dead_letters == 0
    assert spool.read(0, 10).lines[-2:] == ("m v=0.0 0", "m v=1.0 1")


def test_batch_halves_cover_the_batch():
    batch = SpoolBatch((3, 4, 9), ("a", "b", "c"))
    first, second = batch.halves()
    assert (first.ids, first.lines, second.ids, second.lines) == ((3,), ("a",), (4, 9), ("b", "c"))
    assert (batch.first, batch.last) == (3, 9)


def test_closed_spool_refuses_work(spool):
    spool.close()
    with pytest.raises(sqlite3.ProgrammingError):
        spool.append(["x v=1.0 1"])
    spool.close()  # twice is fine


def test_spool_of_a_newer_version_is_refused(tmp_path):
    path = tmp_path / "s.db"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(RuntimeError, match="newer"):
        Spool(path, max_lines=10)


@pytest.mark.parametrize(("max_lines", "warn"), [(0, 0.8), (10, 0), (10, 1.5)])
def test_nonsense_limits_are_refused(tmp_path, max_lines, warn):
    with pytest.raises(ValueError):
        Spool(tmp_path / "s.db", max_lines=max_lines, warn_fraction=warn)
