"""Operator actions end to end: `facwatch simulate` + `facwatch run` as processes, the CLI as the operator.

A silence is set before a mains failure, so one UPS's alert fires without paging; the other UPS's alert
pages, escalates after 6 s without an ack, and the ack from the CLI ends the escalation with a resolve.
Every action shows in `facwatch alerts history` with who did it and what came of it. Ports 30200–30299.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from alerts.commands import ActionStore
from alerts.outbox import Outbox
from alerts.state import AlertStateStore
from tests.conftest import ROOT
from tests.peers import PeerProcess, wait_for_tcp

pytestmark = [pytest.mark.integration, pytest.mark.slow]
FACWATCH = [sys.executable, "-m", "facwatch.cli"]
SITE = ROOT / "tests" / "data" / "operator_site.yaml"
NOTIFY = ROOT / "tests" / "data" / "operator_notify.yaml"
UPS_A_PORT = 30201
T = TypeVar("T")


def cli(data_dir: Path, *args: str) -> tuple[int, str, str]:
    proc = subprocess.run([*FACWATCH, "alerts", *args, "-c", str(SITE), "--data-dir", str(data_dir)],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    return proc.returncode, proc.stdout, proc.stderr


def eventually(probe: Callable[[], T | None], what: str, timeout: float = 45.0) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def firing_fp(db: Path, device: str) -> str | None:
    if not db.exists():
        return None
    store = AlertStateStore(db)
    try:
        return next((fp for fp, a in store.load().items() if a.rule == "ups_on_battery"
                     and a.labels.get("device") == device and a.state.value == "firing"), None)
    finally:
        store.close()


def batches(db: Path, receiver: str) -> list[tuple[str, set[str]]]:
    """(status, devices) of every batch queued for a receiver."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT batch FROM notify_outbox WHERE receiver=? ORDER BY id", (receiver,)).fetchall()
    out = []
    for (text,) in rows:
        batch = json.loads(text)
        out.append((batch["status"], {a["labels"].get("device", "") for a in batch["alerts"]}))
    return out


@pytest.fixture
def running_site(tmp_path):
    simulate = PeerProcess([*FACWATCH, "simulate", "-c", str(SITE), "--time-scale", "10"], tmp_path / "simulate.log")
    run = None
    try:
        wait_for_tcp(30209, timeout=30)  # the simulator's control endpoint
        run = PeerProcess([*FACWATCH, "run", "-c", str(SITE), "--no-dashboard", "--data-dir", str(tmp_path),
                           "--notify", str(NOTIFY)], tmp_path / "run.log")
        db = tmp_path / "facwatch.db"
        eventually(lambda: db.exists() and "alerting" in ActionStore(db).heartbeats(), "the alerting loop")
        yield tmp_path, run
    finally:
        if run is not None:
            run.stop()
        simulate.stop()
    assert "Traceback" not in (run.output() if run else ""), run.output() if run else ""


def test_silence_ack_escalation_and_history_through_the_cli(running_site):
    data_dir, run = running_site
    db = data_dir / "facwatch.db"

    code, out, err = cli(data_dir, "silence", "--match", "device=ups-b", "--for", "1h", "--reason",
                         "battery swap CHG-42", "--by", "bob", "--wait")
    assert code == 0, err
    assert "queued" in out and "applied: silence #1 created for device=ups-b" in out

    code, _, err = cli(data_dir, "silence", "--match", "device=ups-a", "--for", "40d", "--reason", "x", "--by", "bob")
    assert (code, err.strip()) == (2, "facwatch alerts: a silence may last at most 31 days")

    started = subprocess.run([*FACWATCH, "scenario", "-c", str(SITE), "start", "mains_failure"],
                             capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert started.returncode == 0, started.stdout + started.stderr
    fp_a = eventually(lambda: firing_fp(db, "ups-a"), "ups_on_battery on ups-a")
    eventually(lambda: firing_fp(db, "ups-b"), "ups_on_battery on ups-b")

    # ups-a pages and, unacknowledged for 6 s, escalates; the dashboard reads that from another process
    eventually(lambda: ("firing", {"ups-a"}) in batches(db, "pager"), "the page for ups-a")
    escalated = eventually(lambda: Outbox(db).escalations().get(fp_a), "the escalation of ups-a")
    assert escalated[0] == "boss"

    code, out, err = cli(data_dir, "ack", fp_a[:8], "--by", "alice", "--note", "on site, generator manual start",
                         "--wait")
    assert code == 0, out + err
    assert "applied: acknowledged ups_on_battery on ups-a" in out
    code, out, _ = cli(data_dir, "list")
    row_a = next(line for line in out.splitlines() if line.startswith(fp_a))
    assert "firing" in row_a and "alice" in row_a
    row_b = next(line for line in out.splitlines() if "device=ups-b" in line and "ups_on_battery" in line)
    assert "firing" in row_b and " - " in row_b  # firing, muted, nobody acked it

    # the ack ends the escalation: the boss gets the resolve, the dashboard sees it no longer escalated
    eventually(lambda: ("resolved", {"ups-a"}) in batches(db, "boss"), "the escalation's resolve")
    eventually(lambda: fp_a not in Outbox(db).escalations(), "the escalation gone")
    assert not any("ups-b" in devices for _, devices in batches(db, "pager") + batches(db, "boss"))

    code, out, _ = cli(data_dir, "ack", "0000000000000000", "--by", "mallory", "--wait")
    assert code == 1 and "refused: no alert with fingerprint 0000000000000000" in out

    code, out, _ = cli(data_dir, "silences")
    assert "device=ups-b" in out and "bob" in out and "battery swap CHG-42" in out
    code, out, _ = cli(data_dir, "expire", "1", "--by", "carol", "--wait")
    assert code == 0 and "applied: silence #1 expired" in out
    eventually(lambda: ("firing", {"ups-b"}) in batches(db, "pager"), "ups-b paged once the silence ended")

    code, out, _ = cli(data_dir, "history")
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["ID", "REQUESTED", "BY", "SOURCE"]
    done = [(line.split()[3], line) for line in lines[1:]]  # author after the date and time columns
    assert [author for author, _ in done] == ["carol", "mallory", "alice", "bob"]
    assert all(" applied " in line for author, line in done if author != "mallory")
    assert " refused " in done[1][1]
    assert {"collector", "alerting"} <= set(ActionStore(db).heartbeats())
    assert "operator command #2 ack by alice: applied" in run.output()
