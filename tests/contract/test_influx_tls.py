"""InfluxStore over https: the server verified against ``storage.influx.tls.ca_file``, never without it.

VictoriaMetrics (Debian) serves its influx write endpoint with ``-tls`` and a certificate from a throw-away
CA (tests/tlscerts.py). Port 127.0.0.1:30630.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from collectors.model import Reading
from config.secret import Secret
from storage.influx import InfluxStore
from storage.influx_config import InfluxConfig, InfluxConnection
from storage.sqlite import SqliteStore
from tests.contract.conftest import DEVICES, SITE, VictoriaPeer
from tests.tlscerts import Pki, make_pki

pytestmark = [pytest.mark.integration, pytest.mark.slow]

VM_PORT = 30630


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")


@pytest.fixture
def victoria(tmp_path: Path, pki: Pki) -> Iterator[VictoriaPeer]:
    peer = VictoriaPeer(tmp_path / "vm", VM_PORT, tls=pki)
    peer.start()
    yield peer
    peer.stop()


def tls_store(url: str, spool: Path, ca_file: Path | None) -> InfluxStore:
    """A store as resolve_influx builds it for ``url: https://...`` with ``tls: {ca_file: ...}``."""
    config = InfluxConfig.model_validate({"url": url, "token": {"env": "UNUSED"}, "database": "facwatch",
                                          "retry_time_s": 1, "timeout_s": 5,
                                          "tls": {"ca_file": str(ca_file)} if ca_file else {}})
    spool.mkdir(parents=True, exist_ok=True)
    return InfluxStore(InfluxConnection(config, Secret("test-token"), None, None, ca_file, spool / "spool.db"),
                       DEVICES, site=SITE, event_store=SqliteStore(spool / "events.db"))


def close(store: InfluxStore) -> None:
    events = store._events
    store.close()
    events.close()


def readings(base: float, count: int) -> list[Reading]:
    return [Reading("dh1-ups-a", "output.load", base + i, float(i)) for i in range(count)]


def exported(victoria: VictoriaPeer, at_least: int) -> list[float]:
    answer = victoria.export('{__name__="ups_output.load"}',
                             until=lambda series: sum(len(s["values"]) for s in series) >= at_least)
    return sorted(value for series in answer for value in series["values"])


def test_writes_over_https_verified_against_the_configured_ca(victoria, pki, tmp_path):
    store = tls_store(victoria.url, tmp_path / "store", pki.ca_file)
    base = time.time() - 3600
    store.write(readings(base, 50))
    assert store.flush(30), store.spool_stats()
    close(store)
    assert exported(victoria, 50) == [float(i) for i in range(50)]


def test_a_server_the_ca_does_not_vouch_for_gets_nothing_and_nothing_is_lost(victoria, pki, tmp_path):
    stranger = make_pki(tmp_path / "other-ca")  # a CA that did not sign the server's certificate
    store = tls_store(victoria.url, tmp_path / "store", stranger.ca_file)
    base = time.time() - 3600
    store.write(readings(base, 20))
    assert not store.flush(5)  # never sent to an unverified server ...
    stats = store.spool_stats()
    assert stats.pending > 0 and (stats.dead_letters, stats.dropped) == (0, 0)  # ... and kept, not dropped
    close(store)
    assert exported(victoria, 1) == []
    fixed = tls_store(victoria.url, tmp_path / "store", pki.ca_file)  # the operator fixes ca_file and restarts
    assert fixed.flush(30), fixed.spool_stats()
    close(fixed)
    assert exported(victoria, 20) == [float(i) for i in range(20)]


def test_without_a_ca_file_the_system_store_is_used_and_a_private_ca_is_refused(victoria, tmp_path):
    store = tls_store(victoria.url, tmp_path / "store", None)
    store.write(readings(time.time() - 3600, 5))
    assert not store.flush(5) and store.spool_stats().pending > 0
    close(store)
