"""Start and stop the parts of facwatch: the only module that knows them all."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from collectors.model import Reading
from config.load import Site
from storage.base import WriteStore
from storage.sqlite import SqliteStore

log = logging.getLogger("facwatch")

RETENTION_EVERY_S = 3600.0


class ReadingWriter:
    """Carries readings from the collector's event loop to the store on a thread of its own.

    ``put`` never blocks the loop; the thread writes one batch per ``flush_s`` (or per
    ``max_batch`` readings), so SQLite sees few, large transactions.
    """

    def __init__(self, store: WriteStore, *, flush_s: float = 1.0, max_batch: int = 5000):
        self._store = store
        self._flush_s = flush_s
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[Sequence[Reading] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="reading-writer", daemon=True)
        self.written = 0
        self._thread.start()

    def put(self, readings: Sequence[Reading]) -> None:
        """Hand over a poll's readings (called from the event loop; never blocks)."""
        self._queue.put(readings)

    def close(self) -> None:
        """Write what is queued, then stop the thread."""
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        next_retention = time.monotonic() + 60.0  # first pass soon after start, then hourly
        running = True
        while running:
            batch, running = self._gather()
            if batch:
                self._write(batch)
            if time.monotonic() >= next_retention:
                self._retain()
                next_retention = time.monotonic() + RETENTION_EVERY_S

    def _gather(self) -> tuple[list[Reading], bool]:
        """Collect readings until the flush interval ends or the batch is full; False once closed."""
        batch: list[Reading] = []
        deadline = time.monotonic() + self._flush_s
        while len(batch) < self._max_batch:
            try:
                item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return batch, True
            if item is None:
                return batch, False
            batch.extend(item)
        return batch, True

    def _write(self, batch: list[Reading]) -> None:
        try:
            self._store.write(batch)
            self.written += len(batch)
        except Exception:  # a store error must not kill the writer; the readings are logged as lost
            log.exception("store write failed; %d readings lost", len(batch))

    def _retain(self) -> None:
        try:
            removed = self._store.apply_retention(time.time())
        except Exception:
            log.exception("retention pass failed")
            return
        if removed:
            log.info("retention removed %d old samples", removed)


@dataclass
class DashboardThread:
    """The dashboard served by waitress on a thread beside the collectors."""

    server: object
    thread: threading.Thread

    def stop(self) -> None:
        """Close the listening socket and wait for the thread."""
        self.server.close()  # type: ignore[attr-defined]
        self.thread.join(timeout=10)


def open_store(site: Site, data_dir: Path | None = None) -> SqliteStore:
    """The site's SQLite store (in ``data_dir`` if given), its folder created on first use."""
    path = data_dir / "facwatch.db" if data_dir is not None else site.storage_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    return SqliteStore(path, retention_days=site.config.storage.retention_days)


def start_dashboard(site: Site, store: SqliteStore, host: str | None = None,
                    port: int | None = None) -> DashboardThread:
    """Build the Dash app and serve it with waitress on a background thread."""
    from dashboard.app import DashboardSources, create_app
    from dashboard.serve import make_server

    app = create_app(DashboardSources(site=site, store=store))
    server = make_server(app, host or site.config.dashboard.host, port or site.config.dashboard.port)
    thread = threading.Thread(target=server.run, name="dashboard", daemon=True)
    thread.start()
    return DashboardThread(server, thread)


async def wait_for_signal() -> None:
    """Return on SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def run_collectors(site: Site, writer: ReadingWriter, until: asyncio.Future | None = None) -> None:
    """Poll every device of the site into the writer until a signal (or ``until``) arrives."""
    from collectors.scheduler import Collector

    collector = Collector(site, writer.put)
    task = asyncio.create_task(collector.run(), name="collector")
    try:
        await (until if until is not None else wait_for_signal())
    finally:
        await collector.stop()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def run_site(site: Site, *, simulate: bool, dashboard: bool, data_dir: Path | None = None,
                   port: int | None = None) -> None:
    """Collectors + store (+ simulators for the demo) (+ dashboard), until SIGINT/SIGTERM."""
    store = open_store(site, data_dir)
    writer = ReadingWriter(store)
    web = start_dashboard(site, store, port=port) if dashboard else None
    try:
        async with contextlib.AsyncExitStack() as stack:
            if simulate:
                from simulators.site import SiteSimulator

                await stack.enter_async_context(SiteSimulator(site))
            if web is not None:
                cfg = site.config.dashboard
                log.info("dashboard on http://%s:%d/", cfg.host, port or cfg.port)
            await run_collectors(site, writer)
    finally:
        if web is not None:
            web.stop()
        writer.close()
        store.close()
