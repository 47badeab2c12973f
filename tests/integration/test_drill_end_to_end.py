"""``facwatch drill mains_failure`` end to end: simulators on 127.0.0.1:30700-30799, collectors, alert engine,
notification pipeline and an unattended ack; the report holds the measured times, and the real-evidence
export of the same period holds nothing of the drill (while a drills pack holds its timings)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from collectors.model import Reading
from evidence.records import EvidenceStore, UpsSelfTest
from storage.sqlite import SqliteStore
from tests.conftest import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SITE = ROOT / "tests" / "data" / "sites" / "drill.yaml"
# `facwatch drill` / `facwatch evidence` through the parsers of evidence/cli.py (facwatch/cli.py hooks them in)
RUNNER = ("import argparse, sys\nfrom evidence.cli import add_drill_parser, add_parser\n"
          "p = argparse.ArgumentParser(prog='facwatch')\nsub = p.add_subparsers(required=True)\n"
          "add_drill_parser(sub)\nadd_parser(sub)\na = p.parse_args(sys.argv[1:])\nsys.exit(a.handler(a))\n")
NOTIFY = """
receivers: {ops_log: {type: log}}
route: {receiver: ops_log, group_by: [site, rule_group], group_wait: 1, group_interval: 5, repeat_interval: 3600}
delivery: {initial_backoff: 1, max_backoff: 5, failing_after_minutes: 5, meta_receivers: [ops_log]}
"""


def facwatch(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", RUNNER, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, check=False)


def members(pack: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(pack) as z:
        return {name: z.read(name) for name in z.namelist()}


def real_events(data: Path, at: float) -> None:
    """What a production run would have stored in the same period: a reading and a UPS self-test."""
    with SqliteStore(data / "facwatch.db") as store:
        store.write([Reading("ups-a", "battery.charge", at, 100.0)])
    evidence = EvidenceStore(data / "facwatch.db")
    evidence.add(UpsSelfTest(device="ups-a", start=at, end=at + 20, result="pass", vendor_result="done"))
    evidence.close()


def test_drill_reports_measured_times_and_stays_out_of_the_real_evidence(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (tmp_path / "notify.yaml").write_text(NOTIFY)
    start = time.time()
    real_events(data, start)
    report_path = tmp_path / "report.json"
    run = facwatch("drill", "mains_failure", "-c", str(SITE), "--time-scale", "120", "--data-dir", str(data),
                   "--notify", str(tmp_path / "notify.yaml"), "--ack-after", "2s", "-o", str(report_path))
    assert run.returncode == 0, run.stderr[-3000:]
    assert "drill mains_failure: plant" in run.stderr  # progress of a long drill on stderr

    report = json.loads(report_path.read_text())
    [expected] = report["expected"]
    assert (report["result"], expected["alert"], expected["fired"]) == ("pass", "mains_failure", True)
    assert 0 < expected["from_cause_s"] <= expected["within_s"] and expected["to_alert_s"] >= expected["from_cause_s"]
    assert expected["to_alert_s"] <= expected["to_notification_s"] <= expected["to_alert_s"] + 30
    assert expected["acknowledged_by"] == "drill (unattended)" and expected["ack_after_alert_s"] >= 2
    assert "mains_failure" in report_path.with_suffix(".txt").read_text()
    drill_db = Path(report["data_dir"]) / "facwatch.db"
    assert drill_db.exists() and drill_db.parent.parent == data / "drills"

    # the real-evidence pack of the same period: the real self-test is there, nothing of the drill
    day = time.strftime("%Y-%m-%d", time.gmtime(start))
    pack = tmp_path / "real.zip"
    export = facwatch("evidence", "export", "-c", str(SITE), "--data-dir", str(data), "--from", day, "--to", day,
                      "-o", str(pack), "--actor", "auditor")
    assert export.returncode == 0, export.stderr[-3000:]
    files = members(pack)
    manifest = json.loads(files["manifest.json"])
    assert manifest["rows"]["ups_self_tests"] == 1
    assert manifest["rows"]["alert_transitions"] == manifest["rows"]["acknowledgements"] == 0
    assert manifest["rows"]["operator_commands"] == 0 and manifest["rows"]["power_events"] == 0
    assert [json.loads(line)["action"] for line in files["audit/log.jsonl"].splitlines()] == ["evidence.export"]
    fingerprints = {row["fingerprint"] for row in _alert_states(drill_db)}
    for name, blob in files.items():
        if name.startswith(("records/", "audit/")):
            text = blob.decode()
            assert "mains_failure" not in text and "drill" not in text, name
            assert not any(fp in text for fp in fingerprints), name

    # the drills pack of the same period holds the run and its timings
    drills = tmp_path / "drills.zip"
    assert facwatch("evidence", "export", "--drills", "-c", str(SITE), "--data-dir", str(data), "--from", day,
                    "--to", day, "-o", str(drills)).returncode == 0
    timings = json.loads(members(drills)["records/drill_timings.json"])
    assert [(t["scenario"], t["alert"], t["result"]) for t in timings] == [("mains_failure", "mains_failure", "pass")]
    assert json.loads(members(drills)["manifest.json"])["kind"] == "drills"


def _alert_states(db: Path) -> list[dict]:
    import sqlite3

    with sqlite3.connect(db) as conn:
        return [{"fingerprint": fp} for (fp,) in conn.execute("SELECT fingerprint FROM alert_state")]
