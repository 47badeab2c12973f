"""Events (traps, scenario markers) in the SQLite store: round trip, order, filters, schema migration."""

import sqlite3

import pytest

from collectors.model import Event, Reading, Severity
from storage.base import ReadStore, WriteStore
from storage.sqlite import _SCHEMA, SCHEMA_VERSION, SqliteStore

T0 = 1_700_000_000.0


@pytest.fixture
def path(tmp_path):
    return tmp_path / "facwatch.db"


@pytest.fixture
def store(path):
    with SqliteStore(path) as s:
        yield s


def trap(ts=T0, device="dh1-ups-a", name="upsTrapOnBattery", severity=Severity.WARNING, **payload):
    payload = payload or {"oid": "1.3.6.1.2.1.33.2.1", "source": "127.0.0.1:16161",
                          "varbinds": [["1.3.6.1.2.1.33.1.2.3.0", "integer", 12]]}
    return Event(ts, device, "trap", name, severity, payload)


def test_store_still_implements_both_protocols(store):
    assert isinstance(store, WriteStore)
    assert isinstance(store, ReadStore)


def test_event_round_trips_with_payload_and_scenario(store):
    event = Event(T0 + 0.123, "dh1-ups-a", "scenario", "mains_failure started", Severity.INFO,
                  {"step": 1, "nested": {"list": [1, "two", None]}}, "mains_failure")
    store.write_events([event])
    assert store.events(T0, T0 + 1) == [event]


def test_event_without_device_is_kept(store):
    event = trap(device=None, name="1.3.6.1.4.1.9999.0.1", severity=Severity.UNKNOWN)
    store.write_events([event])
    assert store.events(T0, T0 + 1) == [event]


def test_events_come_newest_first_and_same_instant_in_reverse_write_order(store):
    first, second = trap(name="a"), trap(name="b")
    older = trap(ts=T0 - 5, name="older")
    store.write_events([older, first, second])
    assert [e.name for e in store.events(T0 - 10, T0 + 10)] == ["b", "a", "older"]


def test_range_is_half_open(store):
    store.write_events([trap(ts=T0), trap(ts=T0 + 10)])
    assert [e.ts for e in store.events(T0, T0 + 10)] == [T0]
    assert store.events(T0 + 11, T0 + 20) == []


def test_device_filter_and_limit(store):
    store.write_events([trap(ts=T0 + i, device="ups-a" if i % 2 else "ups-b") for i in range(10)])
    assert {e.device for e in store.events(T0, T0 + 100, device="ups-a")} == {"ups-a"}
    newest = store.events(T0, T0 + 100, limit=3)
    assert [e.ts for e in newest] == [T0 + 9, T0 + 8, T0 + 7]
    assert len(store.events(T0, T0 + 100, device="ups-b", limit=2)) == 2


def test_limit_must_be_positive(store):
    with pytest.raises(ValueError, match="limit"):
        store.events(T0, T0 + 1, limit=0)


def test_empty_batch_is_a_no_op(store):
    store.write_events([])
    assert store.events(T0 - 1e9, T0 + 1e9) == []


def test_payload_value_json_cannot_carry_is_stored_as_text(store):
    store.write_events([trap(raw=b"\x01\x02")])
    assert store.events(T0, T0 + 1)[0].payload == {"raw": str(b"\x01\x02")}


def test_events_and_readings_live_side_by_side(store):
    reading = Reading("dh1-ups-a", "battery.runtime", T0, 12.0)
    store.write([reading])
    store.write_events([trap()])
    assert store.latest() == [reading]
    assert len(store.events(T0, T0 + 1)) == 1


def test_events_survive_reopen(path):
    with SqliteStore(path) as store:
        store.write_events([trap()])
    with SqliteStore(path) as store:
        assert store.events(T0, T0 + 1) == [trap()]


def test_version_1_file_is_migrated_and_keeps_its_samples(path):
    with sqlite3.connect(path) as conn:  # a file as schema version 1 wrote it: no events table
        for ddl in _SCHEMA:
            conn.execute(ddl)
        conn.execute("INSERT INTO series (id, device, point) VALUES (1, 'dh1-ups-a', 'battery.charge')")
        conn.execute("INSERT INTO samples VALUES (1, ?, 97.0, 0, NULL, NULL)", (int(T0 * 1000),))
        conn.execute("INSERT INTO latest VALUES (1, ?, 97.0, 0, NULL, NULL)", (int(T0 * 1000),))
        conn.execute("PRAGMA user_version = 1")
    conn.close()
    with SqliteStore(path) as store:
        assert store.latest() == [Reading("dh1-ups-a", "battery.charge", T0, 97.0)]
        store.write_events([trap()])
        assert store.events(T0, T0 + 1) == [trap()]
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3  # 3 added the rollup tables
    conn.close()


def test_device_query_uses_the_device_index(store, path):
    with sqlite3.connect(path) as conn:
        plan = conn.execute("EXPLAIN QUERY PLAN SELECT * FROM events WHERE ts_ms >= 0 AND ts_ms < 1 "
                            "AND device = 'x' ORDER BY ts_ms DESC, id DESC LIMIT 5").fetchall()
    conn.close()
    assert "events_by_device" in " ".join(str(row) for row in plan)
