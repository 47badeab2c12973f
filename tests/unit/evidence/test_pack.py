from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import shutil
import sqlite3
import subprocess
import zipfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from alerts.commands import ActionStore
from alerts.model import Alert, AlertState
from alerts.state import AlertStateStore
from collectors.model import Severity
from evidence import cli as evidence_cli
from evidence.auditlog import AuditAction, AuditLog, AuditWriteError
from evidence.keys import SigningKey, public_key_from_pem, signature_valid
from evidence.pack import export_pack
from evidence.providers import alert_providers
from evidence.verify import verify_pack
from storage.sqlite import SqliteStore
from tests.peers import require

T0 = 1_795_000_000.0  # 2026-11-18 10:13 UTC
DAY = 86_400.0
START, END = T0 - DAY, T0 + DAY
SCREENSHOT = Path(__file__).resolve().parents[3] / "docs" / "screenshots" / "evidence-report.png"


class PackClock:
    def __init__(self, start: float = T0):
        self.now = start

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


@pytest.fixture
def pack_key() -> SigningKey:
    return SigningKey(Ed25519PrivateKey.generate())


@pytest.fixture
def pack_db(tmp_path, pack_key) -> Path:
    """A store with a day of alert history, operator actions and audit records, plus one drill."""
    db = tmp_path / "facwatch.db"
    clock = PackClock(T0 - 3600)
    states = AlertStateStore(db)
    ups = {"device": "dh1-ups-a", "room": "dh1"}
    rack = {"device": "dh1-rack-a3", "room": "dh1"}
    _transition(states, "ups_on_battery", ups, None, AlertState.PENDING, T0 - 3000)
    _transition(states, "ups_on_battery", ups, AlertState.PENDING, AlertState.FIRING, T0 - 2970)
    _transition(states, "inlet_temperature_high", rack, None, AlertState.FIRING, T0 - 2500, value=28.4)
    _transition(states, "ups_on_battery", ups, AlertState.FIRING, AlertState.RESOLVED, T0 - 1200)
    _transition(states, "generator_not_running", {"device": "gen-1"}, None, AlertState.FIRING, T0 - 900,
                scenario="mains_failure_drill")
    states.acknowledge(next(iter(states.load())), "j.smith", "on site, swapping battery string", T0 - 2900)
    states.close()
    actions = ActionStore(db, clock=clock)
    ack = actions.request_ack("fp-ups", "j.smith", "on it", source="10.0.0.7")
    actions.finish(ack, "applied")
    silence = actions.request_silence({"device": "dh1-ups-a"}, T0 + 3600, "battery replacement", "a.jones",
                                      kind="maintenance", source="10.0.0.9")
    actions.add_silence(actions.pending()[0])
    actions.finish(silence, "applied")
    actions.close()
    with AuditLog(db, pack_key, clock=clock, checkpoint_every=3) as log:
        log.append(AuditAction.ACKNOWLEDGEMENT, "j.smith", "ups_on_battery dh1-ups-a", source="10.0.0.7",
                   details={"note": "on it"})
        log.append(AuditAction.MAINTENANCE, "a.jones", "device=dh1-ups-a", source="10.0.0.9",
                   after={"ends_at": "2026-11-18T13:26:40Z", "reason": "battery replacement"})
        log.append(AuditAction.CONFIG_CHANGE, "a.jones", "rule inlet_temperature_high", source="10.0.0.9",
                   before={"threshold": 27.0}, after={"threshold": 26.0})
        log.append(AuditAction.RETENTION_DELETION, "facwatch", "samples older than 400 days",
                   details={"rows": 1204})
    return db


def _transition(states, rule, labels, previous, state, at, value=None, scenario=None):
    alert = Alert(rule, labels, Severity.CRITICAL, state, value, f"{rule} on {labels['device']}", {},
                  at, at if state == AlertState.FIRING else None, at if state == AlertState.RESOLVED else None,
                  at, scenario=scenario)
    states.save(alert, previous)


def _export(db, out, key, **options):
    options.setdefault("providers", alert_providers())
    return export_pack(db, START, END, out, key=key, actor=options.pop("actor", "k.exporter"), site="dc1",
                       clock=PackClock(T0), **options)


def _members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as pack:
        return {name: pack.read(name) for name in pack.namelist()}


def _csv_rows(data: bytes) -> list[dict]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"))))


def test_pack_has_the_documented_layout(pack_db, pack_key, tmp_path):
    summary = _export(pack_db, tmp_path / "pack.zip", pack_key)
    sets = ["alert_transitions", "acknowledgements", "operator_commands", "silences", "audit_log"]
    expected = {"manifest.json", "manifest.sig", "public_key.pem", "report.pdf", "README.txt", "audit/log.jsonl",
                "audit/chain.json", "audit/keys.json"} | {f"records/{s}.{ext}" for s in sets for ext in ("csv", "json")}
    assert set(_members(summary.path)) == expected
    assert summary.rows == {"alert_transitions": 4, "acknowledgements": 1, "operator_commands": 2, "silences": 1,
                            "audit_log": 5}


def test_manifest_is_signed_and_holds_the_hash_of_every_file(pack_db, pack_key, tmp_path):
    members = _members(_export(pack_db, tmp_path / "pack.zip", pack_key).path)
    public = public_key_from_pem(members["public_key.pem"])
    assert signature_valid(public, members["manifest.sig"].decode().strip(), members["manifest.json"])
    manifest = json.loads(members["manifest.json"])
    assert manifest["key_id"] == pack_key.key_id
    assert set(manifest["files"]) == set(members) - {"manifest.json", "manifest.sig"}
    for name, entry in manifest["files"].items():
        assert entry == {"sha256": hashlib.sha256(members[name]).hexdigest(), "size": len(members[name])}


def test_a_fresh_pack_verifies(pack_db, pack_key, tmp_path):
    report = verify_pack(_export(pack_db, tmp_path / "pack.zip", pack_key).path,
                         trusted_key_ids=[pack_key.key_id])
    assert report.ok, report.text()
    assert report.facts["checkpoints"] == "2 of 2 verified"  # seq 3 (every 3) and the head signed at export


def test_audit_segment_carries_its_anchor_and_checkpoints(pack_db, pack_key, tmp_path):
    members = _members(_export(pack_db, tmp_path / "pack.zip", pack_key).path)
    chain = json.loads(members["audit/chain.json"])
    records = [json.loads(line) for line in members["audit/log.jsonl"].splitlines()]
    assert chain["anchor"] == "0" * 64 and chain["first_seq"] == 1 and chain["last_seq"] == 5
    assert [r["seq"] for r in records] == [1, 2, 3, 4, 5]
    assert records[-1]["action"] == "evidence.export"  # the export is in its own pack
    assert [c["seq"] for c in chain["checkpoints"]] == [3, 5] and chain["head"]["seq"] == 5


def test_names_are_pseudonymised_and_stable_within_a_pack(pack_db, pack_key, tmp_path):
    members = _members(_export(pack_db, tmp_path / "pack.zip", pack_key).path)
    for name, data in members.items():
        if name != "report.pdf":
            assert b"j.smith" not in data and b"a.jones" not in data and b"k.exporter" not in data, name
    commands = _csv_rows(members["records/operator_commands.csv"])
    acks = _csv_rows(members["records/acknowledgements.csv"])
    audit = [json.loads(line) for line in members["audit/log.jsonl"].splitlines()]
    smith = commands[0]["author"]
    assert smith.startswith("person-") and acks[0]["acknowledged_by"] == smith and audit[0]["actor"] == smith
    assert commands[1]["author"] == audit[1]["actor"] != smith
    assert "actor_salt" not in audit[0]  # without the salt nobody can test guessed names
    second = _members(_export(pack_db, tmp_path / "second.zip", pack_key).path)
    assert _csv_rows(second["records/operator_commands.csv"])[0]["author"] != smith  # not linkable across packs


def test_revealing_names_needs_a_reason(pack_db, pack_key, tmp_path):
    with pytest.raises(ValueError, match="needs a reason"):
        _export(pack_db, tmp_path / "pack.zip", pack_key, reveal_names=True)
    assert not (tmp_path / "pack.zip").exists()


def test_revealed_names_are_audit_logged_with_who_and_why(pack_db, pack_key, tmp_path):
    summary = _export(pack_db, tmp_path / "pack.zip", pack_key, reveal_names=True,
                      reason="ISO 27001 audit 2026-Q4, request #41", actor="k.exporter")
    members = _members(summary.path)
    assert _csv_rows(members["records/operator_commands.csv"])[0]["author"] == "j.smith"
    audit = [json.loads(line) for line in members["audit/log.jsonl"].splitlines()]
    assert all("actor_salt" in r for r in audit)
    assert verify_pack(summary.path).ok
    with AuditLog(pack_db, pack_key) as log:
        export = log.entries()[summary.export_seq - 1]
    details = json.loads(export.details)
    assert (export.action, export.actor) == ("evidence.export", "k.exporter")
    assert details["reveal_names"] is True and details["reason"] == "ISO 27001 audit 2026-Q4, request #41"


def test_drill_rows_never_enter_the_pack(pack_db, pack_key, tmp_path):
    def drills(db, start, end):
        return [{"run": 1, "scenario": None}, {"run": 2, "scenario": "generator_drill"}]

    providers = {**alert_providers(), "generator_runs": drills}
    members = _members(_export(pack_db, tmp_path / "pack.zip", pack_key, providers=providers).path)
    assert b"generator_not_running" not in members["records/alert_transitions.csv"]
    assert json.loads(members["records/generator_runs.json"]) == [{"run": 1, "scenario": None}]
    assert json.loads(members["manifest.json"])["drill_rows_excluded"]["generator_runs"] == 1


def test_export_is_refused_when_it_cannot_be_audit_logged(pack_db, pack_key, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise AuditWriteError("audit record not stored: database or disk is full")

    monkeypatch.setattr(AuditLog, "append", broken)
    with pytest.raises(AuditWriteError):
        _export(pack_db, tmp_path / "pack.zip", pack_key)
    assert not (tmp_path / "pack.zip").exists()


def test_a_failed_export_leaves_no_pack_and_is_audited(pack_db, pack_key, tmp_path):
    def failing(db, start, end):
        raise RuntimeError("records table damaged")

    with pytest.raises(RuntimeError):
        _export(pack_db, tmp_path / "pack.zip", pack_key, providers={"broken": failing})
    assert [p.name for p in tmp_path.iterdir() if "pack" in p.name] == []
    with AuditLog(pack_db, pack_key) as log:
        last = log.entries()[-1]
    assert last.action == "evidence.export" and json.loads(last.details)["outcome"] == "failed"


def test_progress_is_reported(pack_db, pack_key, tmp_path):
    messages: list[str] = []
    _export(pack_db, tmp_path / "pack.zip", pack_key, progress=messages.append)
    assert any(m.startswith("[1/4] reading alert_transitions") for m in messages)
    assert messages[-1].startswith("wrote ")


def test_csv_cells_cannot_start_a_spreadsheet_formula(pack_db, pack_key, tmp_path):
    def hostile(db, start, end):
        return [{"note": '=HYPERLINK("http://evil","x")'}]

    members = _members(_export(pack_db, tmp_path / "pack.zip", pack_key, providers={"notes": hostile}).path)
    assert _csv_rows(members["records/notes.csv"])[0]["note"].startswith("'=")


def test_report_first_page_renders_to_png(pack_db, pack_key, tmp_path):
    pdftoppm = require("pdftoppm")
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(_members(_export(pack_db, tmp_path / "pack.zip", pack_key).path)["report.pdf"])
    subprocess.run([pdftoppm, "-png", "-r", "80", "-f", "1", "-l", "1", "-singlefile", str(pdf),
                    str(tmp_path / "page")], check=True, timeout=60)
    png = (tmp_path / "page.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    if os.environ.get("FACWATCH_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(tmp_path / "page.png", SCREENSHOT)


# -- CLI ---------------------------------------------------------------------------------------------------------


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="facwatch")
    evidence_cli.add_parser(parser.add_subparsers(required=True))
    args = parser.parse_args(argv)
    return args.handler(args)


@pytest.fixture
def cli_key(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("FACWATCH_AUDIT_KEY", raising=False)
    monkeypatch.delenv("FACWATCH_AUDIT_KEY_FILE", raising=False)


def test_cli_exports_and_verifies(pack_db, tmp_path, capsys, cli_key):
    out = tmp_path / "pack.zip"
    assert _cli(["evidence", "export", "--db", str(pack_db), "--from", "2026-11-17", "--to", "2026-11-18",
                 "-o", str(out), "--actor", "k.exporter"]) == 0
    captured = capsys.readouterr()
    assert "reading alert_transitions" in captured.err and "signed by key" in captured.out
    assert _cli(["evidence", "verify", str(out)]) == 0
    assert "RESULT: OK" in capsys.readouterr().out
    assert _cli(["evidence", "verify-log", "--db", str(pack_db), "--known-head", str(out)]) == 0
    assert _cli(["evidence", "verify-log", "--db", str(pack_db), "--known-head", "99:" + "a" * 64]) == 1
    assert "record seq 99 of a known earlier head is missing" in capsys.readouterr().out
    members = _members(out)
    members["records/silences.csv"] += b"forged,row\r\n"
    with zipfile.ZipFile(out, "w") as pack:
        for name, data in members.items():
            pack.writestr(name, data)
    assert _cli(["evidence", "verify", str(out)]) == 1
    assert "records/silences.csv: SHA-256 does not match the manifest (file modified)" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [
    ["evidence", "verify", "no-such-pack.zip"],
    ["evidence", "export", "--db", "DB", "--from", "2026-11-17", "--to", "2026-11-18", "-o", "p.zip",
     "--reveal-names"],
    ["evidence", "export", "--db", "DB", "--from", "2026-11-18", "--to", "2026-11-17", "-o", "p.zip"],
])
def test_cli_usage_errors_exit_2(pack_db, argv, cli_key, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert _cli([str(pack_db) if a == "DB" else a for a in argv]) == 2
    assert not (tmp_path / "p.zip").exists()


def test_cli_rejects_a_bad_date():
    with pytest.raises(SystemExit) as info:
        _cli(["evidence", "export", "--from", "last tuesday", "--to", "2026-11-18", "-o", "p.zip"])
    assert info.value.code == 2


def test_the_signing_key_never_enters_a_pack_or_the_output(pack_db, tmp_path, capsys, cli_key):
    key_file = pack_db.parent / "audit-signing-key.pem"
    assert _cli(["evidence", "export", "--db", str(pack_db), "--from", "2026-11-17", "--to", "2026-11-18",
                 "-o", str(tmp_path / "pack.zip"), "--actor", "k.exporter"]) == 0
    secret_body = "".join(key_file.read_text().splitlines()[1:-1]).encode()
    for name, data in _members(tmp_path / "pack.zip").items():
        assert secret_body not in data.replace(b"\n", b""), name
    captured = capsys.readouterr()
    assert secret_body.decode() not in captured.out + captured.err


def test_cli_export_with_a_site_config_includes_every_record_set(pack_db, tmp_path, cli_key, repo_root):
    SqliteStore(pack_db).close()  # the readings tables compliance is computed from
    out = tmp_path / "pack.zip"
    config = repo_root / "tests" / "data" / "sites" / "skeleton.yaml"
    assert _cli(["evidence", "export", "-c", str(config), "--data-dir", str(pack_db.parent), "--from", "2026-11-17",
                 "--to", "2026-11-18", "-o", str(out), "--actor", "k.exporter"]) == 0
    rows = json.loads(_members(out)["manifest.json"])["rows"]
    assert list(rows) == ["generator_runs", "ups_self_tests", "power_events", "envelope_compliance",
                          "alert_transitions", "acknowledgements", "operator_commands", "silences", "rule_versions",
                          "audit_log"]
    assert verify_pack(out).ok


def test_cli_export_failure_exits_1_and_writes_nothing(pack_db, tmp_path, cli_key, capsys, monkeypatch):
    def damaged(db, start, end):
        raise sqlite3.DatabaseError("database disk image is malformed")

    monkeypatch.setattr("evidence.providers.pack_providers", lambda site=None: {"generator_runs": damaged})
    out = tmp_path / "pack.zip"
    assert _cli(["evidence", "export", "--db", str(pack_db), "--from", "2026-11-17", "--to", "2026-11-18",
                 "-o", str(out)]) == 1
    assert "evidence export failed, nothing written" in capsys.readouterr().err and not out.exists()


def test_cli_export_is_refused_when_the_audit_log_cannot_be_opened(tmp_path, cli_key, capsys):
    db = tmp_path / "facwatch.db"
    db.write_bytes(b"this is not a database" * 100)
    assert _cli(["evidence", "export", "--db", str(db), "--from", "2026-11-17", "--to", "2026-11-18",
                 "-o", str(tmp_path / "pack.zip")]) == 1
    assert "evidence export refused: the audit log cannot record it" in capsys.readouterr().err
