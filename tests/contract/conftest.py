"""Real store peers for the contract and outage tests: Debian's influxd 1.6.7 and VictoriaMetrics.

Ports: 127.0.0.1:30600-30649 (bench/bench_influx.py uses 30680-30699).

influxd 1.6.7 is the only InfluxDB Debian ships; it serves InfluxQL on /query but not /api/v2/write,
which arrived in 1.8 as a compatibility endpoint (LIBRARIES.md §3: 404). ``V2WriteShim`` stands in
for that endpoint: it forwards ``/api/v2/write?bucket=db[/rp]&precision=..`` to 1.x ``/write`` (gzip
body and all) exactly as 1.8 maps it, and every other request unchanged. The writes themselves come
from influxdb-client; VictoriaMetrics takes them natively.
"""

from __future__ import annotations

import itertools
import json
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from config.secret import Secret
from storage.influx import DeviceTags, InfluxStore
from storage.influx_config import InfluxConfig, InfluxConnection
from storage.sqlite import SqliteStore
from tests.peers import PeerProcess, require, wait_for_tcp
from tests.tlscerts import Pki

INFLUXD_HTTP_PORT = 30600
INFLUXD_BIND_PORT = 30601
SHIM_PORT = 30602
VM_PORT = 30610
SHIM_THREAD = "v2-write-shim"
SITE = "dc1"
DEVICES = {
    "dh1-ups-a": DeviceTags("ups", "dh1", "ups/ietf_rfc1628"),
    "dh1-ups-b": DeviceTags("ups", "dh1", "ups/apc_powernet"),
    "dh1-th-1": DeviceTags("thsensor", "dh1", "thsensor/apc_netbotz"),
}

_INFLUXD_CONF = """reporting-disabled = true
bind-address = "127.0.0.1:{bind}"
[meta]
  dir = "{root}/meta"
[data]
  dir = "{root}/data"
  wal-dir = "{root}/wal"
  query-log-enabled = false
[http]
  bind-address = "127.0.0.1:{http}"
  log-enabled = false
[monitor]
  store-enabled = false
[continuous_queries]
  enabled = false
"""


def http(method: str, url: str, body: bytes | None = None, headers: dict | None = None,
         context: ssl.SSLContext | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def influxql(port: int, q: str, db: str | None = None) -> dict:
    fields = {"q": q, "epoch": "ms"} | ({"db": db} if db else {})
    status, body = http("POST", f"http://127.0.0.1:{port}/query", urllib.parse.urlencode(fields).encode(),
                        {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200, body
    return json.loads(body)


class InfluxdPeer:
    """Debian's influxd on loopback high ports, with a temp config and data dir, stopped by PID."""

    def __init__(self, root: Path, http_port: int = INFLUXD_HTTP_PORT, bind_port: int = INFLUXD_BIND_PORT):
        self.root, self.port, self.bind_port = root, http_port, bind_port
        self.binary = require("influxd")
        root.mkdir(parents=True, exist_ok=True)
        self.conf = root / "influxd.conf"
        self.conf.write_text(_INFLUXD_CONF.format(root=root, bind=bind_port, http=http_port))
        self.process: PeerProcess | None = None

    def start(self) -> None:
        self.process = PeerProcess([self.binary, "-config", str(self.conf)], self.root / "influxd.log")
        wait_for_tcp(self.port, timeout=20)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None


class VictoriaPeer:
    """VictoriaMetrics on a loopback high port; stop() + start() keeps the data (same storage dir)."""

    def __init__(self, root: Path, port: int = VM_PORT, tls: Pki | None = None):
        self.root, self.port, self.tls = root, port, tls  # serve https with tls.cert_file/key_file
        self.binary = require("victoria-metrics")
        self.process: PeerProcess | None = None
        self._starts = itertools.count()

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def start(self) -> None:
        argv = [self.binary, f"-httpListenAddr=127.0.0.1:{self.port}", f"-storageDataPath={self.root / 'data'}",
                "-search.latencyOffset=0s", "-retentionPeriod=100y"]
        if self.tls:
            argv += ["-tls", f"-tlsCertFile={self.tls.cert_file}", f"-tlsKeyFile={self.tls.key_file}"]
        self.root.mkdir(parents=True, exist_ok=True)
        self.process = PeerProcess(argv, self.root / f"vm-{next(self._starts)}.log")
        wait_for_tcp(self.port, timeout=20)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(timeout=20)
            self.process = None

    def export(self, match: str, until: Callable[[list[dict]], bool] = bool, settle_s: float = 15.0) -> list[dict]:
        """Every stored sample of the series matching ``match`` (a series selector).

        Fresh series take up to a few seconds to become searchable (LIBRARIES.md §3): poll after a
        forced flush until ``until(answer)`` holds or ``settle_s`` passed, then return the last answer.
        """
        deadline = time.monotonic() + settle_s
        while True:
            context = ssl.create_default_context(cafile=str(self.tls.ca_file)) if self.tls else None
            http("GET", f"{self.url}/internal/force_flush", context=context)
            status, body = http("GET", f"{self.url}/api/v1/export?{urllib.parse.urlencode({'match[]': match})}",
                                context=context)
            assert status == 200, body
            answer = [json.loads(line) for line in body.splitlines() if line.strip()]
            if until(answer) or time.monotonic() > deadline:
                return answer
            time.sleep(0.3)


class V2WriteShim:
    """InfluxDB 1.8's /api/v2/write compatibility endpoint in front of 1.6.7 (see the module docstring)."""

    def __init__(self, target_port: int, port: int = SHIM_PORT):
        target = f"http://127.0.0.1:{target_port}"

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self._forward("POST")

            def do_GET(self) -> None:
                self._forward("GET")

            def _forward(self, method: str) -> None:
                url = urllib.parse.urlsplit(self.path)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0))) if method == "POST" else None
                path, query = url.path, url.query
                if path == "/api/v2/write":
                    params = dict(urllib.parse.parse_qsl(query))
                    db, _, rp = params["bucket"].partition("/")
                    query = urllib.parse.urlencode({"db": db, "precision": params.get("precision", "ns")}
                                                   | ({"rp": rp} if rp else {}))
                    path = "/write"
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() in ("content-type", "content-encoding", "authorization")}
                status, answer = http(method, f"{target}{path}?{query}", body, headers)
                self.send_response(status)
                self.send_header("Content-Length", str(len(answer)))
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = port
        self._thread = threading.Thread(target=self.server.serve_forever, name=SHIM_THREAD, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join()


def connection(url: str, database: str, spool_path: Path, **overrides: object) -> InfluxConnection:
    """A connection as resolve_influx would build it (token auth; 1.6.7 and VM ignore the token)."""
    config = InfluxConfig.model_validate({"url": url, "token": {"env": "UNUSED"}, "database": database,
                                          "retry_time_s": 1, "timeout_s": 5} | overrides)
    return InfluxConnection(config, Secret("test-token"), None, None, None, spool_path)


def influx_store(url: str, database: str, tmp: Path, **overrides: object) -> InfluxStore:
    tmp.mkdir(parents=True, exist_ok=True)
    return InfluxStore(connection(url, database, tmp / "spool.db", **overrides), DEVICES, site=SITE,
                       event_store=SqliteStore(tmp / "events.db"))


def close_store(store: InfluxStore) -> None:
    events = store._events
    store.close()
    events.close()


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """A closed store leaves no sender, client or scheduler thread behind (servers are session-wide)."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5
    # the session-wide shim may first start inside a test that asks for it through getfixturevalue
    while (leaked := [t.name for t in set(threading.enumerate()) - before
                      if t.is_alive() and t.name != SHIM_THREAD]):
        assert time.monotonic() < deadline, f"threads left running: {leaked}"
        time.sleep(0.05)


@pytest.fixture(scope="session")
def influxd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxdPeer]:
    peer = InfluxdPeer(tmp_path_factory.mktemp("influxd"))
    peer.start()
    yield peer
    peer.stop()


@pytest.fixture(scope="session")
def shim(influxd: InfluxdPeer) -> Iterator[V2WriteShim]:
    server = V2WriteShim(influxd.port)
    yield server
    server.close()


_databases = itertools.count()


@pytest.fixture
def influx_database(influxd: InfluxdPeer) -> str:
    """A fresh database per test, so tests sharing the server never see each other's points."""
    name = f"contract_{next(_databases)}_{int(time.time())}"
    influxql(influxd.port, f'CREATE DATABASE "{name}"')
    return name


@pytest.fixture
def victoria(tmp_path: Path) -> Iterator[VictoriaPeer]:
    peer = VictoriaPeer(tmp_path / "vm")
    peer.start()
    yield peer
    peer.stop()
