"""``facwatch evidence …`` (export, verify, verify-log, thresholds) and ``facwatch drill``.

Exit codes: 0 done / intact / drill passed, 1 tampered, the export failed or the drill failed, 2 usage
(bad arguments, missing file, unknown scenario).
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from config.load import Site
    from storage.base import ReadStore

DEMO_CONFIG = Path(__file__).resolve().parents[1] / "config" / "sites" / "demo.yaml"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``evidence export|verify|verify-log`` to the ``facwatch`` sub-commands."""
    evidence = subparsers.add_parser("evidence", help="auditor evidence: export a signed pack, verify it")
    actions = evidence.add_subparsers(required=True, metavar="ACTION")

    export = actions.add_parser("export", help="write a signed evidence pack (zip) for a period")
    export.add_argument("--from", dest="start", required=True, type=start_of,
                        help="first day (YYYY-MM-DD, UTC) or an ISO time (UTC unless it carries an offset)")
    export.add_argument("--to", dest="end", required=True, type=end_of,
                        help="last day, inclusive (YYYY-MM-DD, UTC), or an ISO time, exclusive "
                             "(UTC unless it carries an offset)")
    export.add_argument("-o", "--output", required=True, type=Path, help="the pack to write, e.g. pack.zip")
    export.add_argument("--reveal-names", action="store_true",
                        help="keep personal names instead of pseudonyms (needs --reason; audit-logged)")
    export.add_argument("--reason", help="why names are revealed (recorded in the audit log)")
    export.add_argument("--actor", help="who exports (default: the login name)")
    export.add_argument("--drills", action="store_true",
                        help="a drills pack: the drill reports of the period, and nothing of real events")
    _store_options(export)
    export.set_defaults(handler=cmd_export)

    verify = actions.add_parser("verify", help="verify a pack on its own: signature, hashes, audit chain")
    verify.add_argument("pack", type=Path)
    verify.add_argument("--trusted-key", action="append", dest="trusted_keys", metavar="KEY_ID",
                        help="accept only packs signed by this key id (repeatable)")
    verify.set_defaults(handler=cmd_verify)

    verify_log = actions.add_parser("verify-log", help="verify the audit log in the live database")
    verify_log.add_argument("--known-head", action="append", dest="known_heads", default=[], type=_head,
                            metavar="PACK_OR_SEQ:HASH", help="an earlier pack (its head is read) or seq:hash the "
                            "log must still contain (repeatable)")
    _store_options(verify_log)
    verify_log.set_defaults(handler=cmd_verify_log)

    thresholds = actions.add_parser("thresholds", help="thresholds in force: rule versions with who, when, why")
    thresholds.add_argument("--rule", help="only this rule's history")
    thresholds.add_argument("--at", type=start_of, help="the versions in force at this time "
                                                          "(ISO or date; UTC unless it carries an offset)")
    _store_options(thresholds)
    thresholds.set_defaults(handler=cmd_thresholds)


def add_change_options(parser: argparse.ArgumentParser) -> None:
    """``--change-by/--change-reason`` for ``facwatch run``: who changed the rules since the last start, why."""
    parser.add_argument("--change-by", help="who changed rules or envelopes since the last start (default: "
                                            "FACWATCH_CHANGE_BY, else recorded as 'unknown (not given)')")
    parser.add_argument("--change-reason", help="why, e.g. a change ticket (default: FACWATCH_CHANGE_REASON)")


def add_drill_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``drill SCENARIO`` to the ``facwatch`` sub-commands."""
    drill = subparsers.add_parser("drill", help="run a scenario end to end against the simulators and time it")
    drill.add_argument("scenario", help="a scenario (see `facwatch scenario list`), e.g. mains_failure")
    drill.add_argument("-c", "--config", type=Path, default=DEMO_CONFIG, help="site config (simulated devices)")
    drill.add_argument("--time-scale", type=float, help="simulated seconds per wall second (default: the config's)")
    drill.add_argument("-o", "--output", type=Path, help="the report (JSON; a .txt summary is written beside it)")
    drill.add_argument("--notify", type=Path, help="notification config: time notifications too")
    drill.add_argument("--ack-after", type=_seconds, metavar="DURATION",
                       help="unattended: acknowledge each alert this long after it fires (e.g. 5s); without it "
                            "only acks by people count (facwatch alerts ack --data-dir DRILL_DIR)")
    drill.add_argument("--settle", type=_seconds, default=10.0, metavar="DURATION",
                       help="after the scenario, wait at most this long for notifications and acks (default 10s)")
    drill.add_argument("--data-dir", type=Path, help="as for `facwatch run`: the site's data folder (the drill "
                                                    "goes to its drills/ sub-folder, the report into its database)")
    drill.add_argument("--drill-dir", type=Path, help="the drill's own database folder (default: DATA_DIR/drills/"
                                                     "SCENARIO-STAMP)")
    drill.set_defaults(handler=cmd_drill)


def _seconds(text: str) -> float:
    from config.durations import parse_duration

    try:
        return parse_duration(text)
    except (TypeError, ValueError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _store_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", type=Path, help="the SQLite file (default: the site config's; without the config, "
                                                "envelope compliance is left out)")
    parser.add_argument("-c", "--config", type=Path, default=DEMO_CONFIG, help="site config (for the store path)")
    parser.add_argument("--data-dir", type=Path, help="as for `facwatch run`: the folder of facwatch.db")
    parser.add_argument("--shard", type=shard_argument, metavar="I/N",
                        help="a sharded site (`facwatch collect --shard I/N`): that shard's file and devices; "
                             "each shard's pack is signed with its own audit log")
    parser.add_argument("--key-file", type=Path, help="Ed25519 signing key (default: FACWATCH_AUDIT_KEY, "
                                                        "FACWATCH_AUDIT_KEY_FILE, or one beside the database)")


def start_of(text: str) -> datetime:
    """A ``--from`` value: a date means its midnight UTC; an ISO time without zone means UTC."""
    return _parse(text, end=False)


def end_of(text: str) -> datetime:
    """A ``--to`` value: a date means the END of that day (inclusive); an ISO time is taken as is."""
    return _parse(text, end=True)


def _parse(text: str, end: bool) -> datetime:
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return moment + timedelta(days=1) if end else moment
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD) or ISO time: {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _head(text: str) -> tuple[int, str]:
    """A known head: ``SEQ:HASH`` or the path of an earlier pack whose audit/chain.json names its head."""
    seq, _, digest = text.partition(":")
    if seq.isdigit() and len(digest) == 64:
        return int(seq), digest
    import json
    import zipfile

    try:
        with zipfile.ZipFile(text) as pack:
            head = json.loads(pack.read("audit/chain.json"))["head"]
        return int(head["seq"]), str(head["hash"])
    except (OSError, zipfile.BadZipFile, KeyError, TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"neither SEQ:HASH nor a pack with a head: {text!r}") from None


def cmd_export(args: argparse.Namespace) -> int:
    """``facwatch evidence export``: 0 written, 1 failed (nothing written), 2 usage."""
    from evidence.auditlog import AuditWriteError
    from evidence.keys import SigningKeyError, load_signing_key
    from evidence.pack import export_pack
    from evidence.providers import drill_providers

    if args.reveal_names and not args.reason:
        return _usage("--reveal-names needs --reason TEXT (it is recorded in the audit log)")
    if args.end <= args.start:
        return _usage("--to must be after --from")
    db_path, site = _store(args)
    if not db_path.exists():
        return _usage(f"no database at {db_path}")
    if site is None and not args.drills:
        _progress("--db without a site config: envelope compliance is left out")
    failures: tuple[type[Exception], ...] = (sqlite3.Error, OSError)
    if site is not None and site.influx is not None:
        from storage.influx import InfluxQueryError

        failures += (InfluxQueryError,)  # InfluxDB down or refusing: no pack rather than one without readings
    try:
        key = load_signing_key(db_path.parent, key_file=args.key_file)
        with _readings(None if args.drills else site, db_path) as readings:
            summary = export_pack(db_path, args.start.timestamp(), args.end.timestamp(), args.output,
                                  providers=drill_providers() if args.drills else _pack_providers(site, readings),
                                  reveal_names=args.reveal_names, reason=args.reason, actor=args.actor, key=key,
                                  site=site.config.site.id if site else "facwatch", progress=_progress,
                                  drills=args.drills)
    except ValueError as exc:  # SigningKeyError included
        kind = "signing key" if isinstance(exc, SigningKeyError) else "export"
        print(f"evidence export: {kind}: {exc}", file=sys.stderr)
        return 1 if isinstance(exc, SigningKeyError) else 2
    except AuditWriteError as exc:
        print(f"evidence export refused: the audit log cannot record it ({exc})", file=sys.stderr)
        return 1
    except failures as exc:
        print(f"evidence export failed, nothing written: {exc}", file=sys.stderr)
        return 1
    rows = ", ".join(f"{name} {count}" for name, count in summary.rows.items())
    print(f"{summary.path}: signed by key {summary.key_id}; {rows}; export recorded as audit seq {summary.export_seq}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """``facwatch evidence verify``: 0 intact, 1 tampered or damaged, 2 no such file."""
    from evidence.verify import verify_pack

    if not args.pack.is_file():
        return _usage(f"no such file: {args.pack}")
    report = verify_pack(args.pack, trusted_key_ids=args.trusted_keys)
    print(report.text())
    return 0 if report.ok else 1


def cmd_verify_log(args: argparse.Namespace) -> int:
    """``facwatch evidence verify-log``: 0 intact, 1 tampered, 2 no database."""
    from evidence.verify import verify_log

    db_path, _ = _store(args)
    if not db_path.exists():
        return _usage(f"no database at {db_path}")
    trusted = None
    if args.key_file is not None:
        from evidence.keys import read_key_file

        key = read_key_file(args.key_file)
        trusted = {key.key_id: key.public_key()}
    report = verify_log(db_path, trusted_keys=trusted, known_heads=args.known_heads)
    print(report.text())
    return 0 if report.ok else 1


def cmd_thresholds(args: argparse.Namespace) -> int:
    """``facwatch evidence thresholds``: rule versions (one rule's history, or those in force at a time)."""
    from evidence.providers import iso
    from evidence.thresholds import in_force, rule_versions

    db_path, _ = _store(args)
    if not db_path.exists():
        return _usage(f"no database at {db_path}")
    rows = in_force(db_path, args.at.timestamp()) if args.at else rule_versions(db_path, 0, 2**40)
    if args.rule:
        rows = [r for r in rows if r["rule"] == args.rule]
    for row in rows:
        valid_from, valid_to = (row[k] if isinstance(row[k], str | None) else iso(row[k])
                                for k in ("valid_from", "valid_to"))
        print(f"{row['rule']:<36} {row['hash']}  {valid_from} .. {valid_to or 'now':<20}  by {row['changed_by']}: "
              f"{row['reason']}")
    return 0


def cmd_drill(args: argparse.Namespace) -> int:
    """``facwatch drill``: 0 every expected alert in budget, 1 a failed drill, 2 usage."""
    import asyncio

    from config.load import load_site
    from evidence.drill import DrillOptions, drill

    site = load_site(args.config)
    options = DrillOptions(args.scenario, time_scale=args.time_scale, notify=args.notify, ack_after=args.ack_after,
                           drill_dir=args.drill_dir, settle_s=args.settle)
    try:
        report = asyncio.run(drill(site, options, args.output, args.data_dir))
    except ValueError as exc:
        return _usage(str(exc))
    from evidence.drill import report_text

    print(report_text(report), end="")
    return 0 if report["result"] == "pass" else 1



def _store(args: argparse.Namespace) -> tuple[Path, Site | None]:
    """The database file and, when it came from a site config, the site."""
    if args.db is not None:
        return args.db, None
    from config.load import load_site

    site = load_site(args.config)
    shard = getattr(args, "shard", None)
    if shard is not None and shard.count > 1:
        from alerts.rules import load_rules
        from collectors.sharding import shard_data_dir, shard_site

        site = shard_site(site, shard, load_rules())  # as `facwatch collect --shard` splits it
        if args.data_dir is not None:
            return shard_data_dir(args.data_dir, shard) / "facwatch.db", site
    return (args.data_dir / "facwatch.db" if args.data_dir is not None else site.storage_path()), site


def shard_argument(text: str):
    """``--shard 2/3`` → Shard(2, 3); an argparse error otherwise (also `facwatch collect --shard`)."""
    from collectors.sharding import Shard

    try:
        return Shard.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


@contextmanager
def _readings(site: Site | None, db_path: Path) -> Iterator[ReadStore | None]:
    """With ``storage.influx``: InfluxDB read-only (as ``facwatch dashboard`` opens it), closed after; else None."""
    if site is None or site.influx is None:
        yield None
        return
    from facwatch.runtime import open_reading_store
    from storage.sqlite import SqliteStore

    events = SqliteStore(db_path, background_backfill=False)
    try:
        readings = open_reading_store(site, events, send=False)
        try:
            yield readings
        finally:
            readings.close()
    finally:
        events.close()


def _pack_providers(site: Site | None, readings: ReadStore | None) -> dict:
    """The pack's record sets; compliance from ``readings`` when the samples are not in the SQLite file."""
    from evidence.providers import pack_providers

    return pack_providers(site) if readings is None else pack_providers(site, readings)


def _progress(message: str) -> None:
    print(f"evidence export: {message}", file=sys.stderr, flush=True)


def _usage(message: str) -> int:
    print(f"facwatch evidence: {message}", file=sys.stderr)
    return 2
