"""InfluxStore without a server: line encoding, result decoding, and the sender's ack/retry/dead-letter logic.

The sender is driven step by step (no thread): a fake WriteApi records the bodies it is given and the
test answers them through the same callbacks influxdb-client calls.
"""

from __future__ import annotations

import threading

import pytest
from influxdb_client.rest import ApiException
from urllib3.exceptions import MaxRetryError

from collectors.model import Event, Quality, Reading, Severity
from config.secret import Secret
from storage.influx import BACKOFF_MIN_S, DeviceTags, InfluxStore, _ident, _latest_reading, _literal
from storage.influx_config import InfluxConfig, InfluxConnection
from storage.spool import Spool
from storage.sqlite import SqliteStore

T = 1_767_225_600.0
DEVICES = {"dh1-ups-a": DeviceTags("ups", "dh1", "ups/ietf_rfc1628"),
           "odd one": DeviceTags("th,sensor", "hall 1", "x=y")}


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeWriteApi:
    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    def write(self, bucket: str, org: str, body: bytes, precision: str) -> None:
        self.bodies.append(body)

    def close(self) -> None:
        pass


def connection(tmp_path, **overrides) -> InfluxConnection:
    config = InfluxConfig.model_validate({"url": "http://127.0.0.1:1", "token": {"env": "T"}, "database": "fw",
                                          "batch_lines": 4, "max_in_flight": 2} | overrides)
    return InfluxConnection(config, Secret("t"), None, None, None, tmp_path / "spool.db")


@pytest.fixture
def store(tmp_path):
    events = SqliteStore(tmp_path / "events.db")
    s = InfluxStore(connection(tmp_path), DEVICES, site="dc1", event_store=events, start=False)
    yield s
    s.close()
    events.close()


@pytest.fixture
def sender(store):
    sender = store._sender
    sender._write_api = FakeWriteApi()
    sender._clock = FakeClock()
    return sender


def step(sender) -> bytes:
    """Let the sender hand over one batch; return its body."""
    assert sender._may_send()
    sender._send(sender._next_batch())
    return sender._write_api.bodies[-1]


def test_a_poll_becomes_one_line_with_the_schema_tags(store):
    lines, count = store._lines([Reading("dh1-ups-a", "input.voltage", T, 230),
                                 Reading("dh1-ups-a", "output.load", T, 41.5),
                                 Reading("dh1-ups-a", "input.voltage", T + 10, 231.0)])
    assert count == 3
    assert lines == [
        "ups,device=dh1-ups-a,profile=ups/ietf_rfc1628,room=dh1,site=dc1 input.voltage=230.0,output.load=41.5 "
        "1767225600000",
        "ups,device=dh1-ups-a,profile=ups/ietf_rfc1628,room=dh1,site=dc1 input.voltage=231.0 1767225610000"]


def test_readings_without_a_good_value_write_only_their_quality_code(store):
    lines, count = store._lines([Reading("dh1-ups-a", "a", T, None, Quality.MISSING),
                                 Reading("dh1-ups-a", "b", T, 9e99, Quality.INVALID),
                                 Reading("dh1-ups-a", "c", T, float("inf")),
                                 Reading("dh1-ups-a", "d", T, None, Quality.GOOD, "firmware 1.2")])
    assert count == 3  # the text-only reading has nothing numeric to store
    assert lines[0].split(" ")[1] == "a__quality=1.0,b__quality=2.0,c__quality=1.0"


def test_scenario_readings_are_tagged_and_kept_apart(store):
    lines, _ = store._lines([Reading("dh1-ups-a", "a", T, 1.0, scenario="mains_failure"),
                             Reading("dh1-ups-a", "a", T, 2.0)])
    assert [line.split(" ")[0].split(",")[4:] for line in lines] == [["scenario=mains_failure", "site=dc1"],
                                                                     ["site=dc1"]]


def test_names_are_escaped_and_unknown_devices_are_unclassified(store):
    lines, _ = store._lines([Reading("odd one", "temp, inlet", T, 1.0), Reading("nobody", "x", T, 2.0)])
    assert lines[0].startswith(r"th\,sensor,device=odd\ one,profile=x\=y,room=hall\ 1,site=dc1 temp\,\ inlet=1.0 ")
    assert lines[1].startswith("unclassified,device=nobody,site=dc1 x=2.0 ")


def test_influxql_quoting():
    assert _ident('a"b') == '"a\\"b"'
    assert _literal("it's") == "'it\\'s'"


def test_last_value_and_last_quality_decode_to_readings():
    value = _latest_reading("input.voltage", {"tags": {"device": "d", "scenario": ""}, "values": [[T * 1000, 230]]})
    bad = _latest_reading("input.voltage__quality", {"tags": {"device": "d", "scenario": "drill"},
                                                      "values": [[T * 1000, 2.0]]})
    assert value == Reading("d", "input.voltage", T, 230.0, Quality.GOOD)
    assert bad == Reading("d", "input.voltage", T, None, Quality.INVALID, None, "drill")


def test_write_returns_once_spooled(store):
    assert store.write([Reading("dh1-ups-a", "a", T + i, 1.0) for i in range(3)]) == 3
    assert store.spool_stats().pending == 3


def test_acknowledged_batch_leaves_the_spool(store, sender):
    store.write([Reading("dh1-ups-a", "a", T + i, 1.0) for i in range(6)])
    first, second = step(sender), step(sender)
    assert first.count(b"\n") == 3 and second.count(b"\n") == 1  # batch_lines=4
    assert not sender._may_send()  # max_in_flight=2
    sender._on_success(("fw", "-", "ms"), second)
    sender._on_success(("fw", "-", "ms"), first)
    assert store.spool_stats().pending == 0
    assert sender._in_flight_count == 0


def test_failed_batch_stays_spooled_and_is_resent_after_a_backoff(store, sender):
    store.write([Reading("dh1-ups-a", "a", T + i, 1.0) for i in range(6)])
    first, second = step(sender), step(sender)
    sender._on_error(("fw", "-", "ms"), first, MaxRetryError(None, "/api/v2/write", "connection refused"))
    sender._on_success(("fw", "-", "ms"), second)
    assert store.spool_stats().pending == 4
    assert not sender._may_send()  # backing off
    sender._clock.now += BACKOFF_MIN_S
    assert step(sender) == first  # rewound to the oldest unacknowledged line
    assert sender._backoff == 2 * BACKOFF_MIN_S


def test_auth_and_not_found_answers_are_retried_not_dead_lettered(store, sender):
    store.write([Reading("dh1-ups-a", "a", T, 1.0)])
    body = step(sender)
    sender._on_error(("fw", "-", "ms"), body, ApiException(status=401, reason="Unauthorized"))
    assert store.spool_stats().pending == 1
    assert store.spool_stats().dead_letters == 0


def test_rejected_batch_is_halved_until_the_bad_line_is_dead_lettered(store, sender):
    store.write([Reading("dh1-ups-a", "a", T + i, 1.0) for i in range(4)])
    good = [line.encode() for line in store._spool.read(0, 4).lines]
    bad = good.pop(2)
    rejected = ApiException(status=400, reason="Bad Request")
    sender._on_error(("fw", "-", "ms"), step(sender), rejected)  # lines 0-3
    assert step(sender) == b"\n".join(good[:2])  # the first half is sent before anything new
    sender._on_success(("fw", "-", "ms"), b"\n".join(good[:2]))
    sender._on_error(("fw", "-", "ms"), step(sender), rejected)  # lines 2-3
    assert step(sender) == bad
    sender._on_error(("fw", "-", "ms"), bad, rejected)
    assert step(sender) == good[2]
    sender._on_success(("fw", "-", "ms"), good[2])
    ((status, _, line),) = store._spool.dead_letters()
    assert (status, line) == (400, bad.decode())
    assert store.spool_stats().pending == 0


def test_drain_reports_lines_still_pending(store):
    store.write([Reading("dh1-ups-a", "a", T, 1.0)])
    assert not store.flush(timeout=0.05)


def test_events_stay_in_the_local_sqlite_store(store):
    store.write_events([Event(T, "dh1-ups-a", "trap", "onBattery", Severity.WARNING)])
    assert [e.name for e in store.events(T, T + 1)] == ["onBattery"]


def test_retention_is_the_servers_unless_configured(store):
    assert store.apply_retention(T) == 0  # no query sent: nothing listens on port 1


def test_spool_can_be_given(tmp_path):
    spool = Spool(tmp_path / "own.db", max_lines=10)
    events = SqliteStore(tmp_path / "e.db")
    store = InfluxStore(connection(tmp_path), DEVICES, site="dc1", event_store=events, spool=spool, start=False)
    store.write([Reading("dh1-ups-a", "a", T, 1.0)])
    assert spool.pending == 1
    store.close()
    events.close()


def test_lines_spooled_while_the_sender_found_the_spool_empty_are_not_missed(store, sender, monkeypatch):
    real_read, raced = store._spool.read, []

    def racing_read(after: int, limit: int):
        result = real_read(after, limit)
        if not raced:  # a collector writes between the sender's empty read and its "nothing more" note
            raced.append(store.write([Reading("dh1-ups-a", "a", T, 1.0)]))
        return result

    monkeypatch.setattr(store._spool, "read", racing_read)
    found: list = []
    looking = threading.Thread(target=lambda: found.append(sender._next_batch()))
    looking.start()
    looking.join(5)
    with sender._cond:  # a regression would wait forever: let the thread go
        sender._stopping = True
        sender._cond.notify_all()
    looking.join()
    assert found and found[0] is not None and found[0].lines[0].startswith("ups,device=dh1-ups-a")
