"""The ``facwatch`` command line."""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from auth.cli import add_parser as add_auth_parsers
from collectors.modbus_certs import add_parser as add_certs_parser
from collectors.sharding import Shard, shard_data_dir, shard_site
from config.load import Site, load_site
from config.yamlfile import ConfigError
from evidence.cli import add_change_options, add_drill_parser, shard_argument
from evidence.cli import add_parser as add_evidence_parser

DEMO_CONFIG = Path(__file__).resolve().parents[1] / "config" / "sites" / "demo.yaml"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``facwatch`` console script."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    _quiet_libraries()
    try:
        return args.handler(args)
    except ConfigError as exc:
        print(f"{len(exc.problems)} problem(s) in the configuration:", file=sys.stderr)
        print(exc, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="facwatch", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    check = sub.add_parser("check", help="validate a site config and every profile; list all problems")
    check.add_argument("-c", "--config", required=True, type=Path)
    check.set_defaults(handler=cmd_check)

    simulate = sub.add_parser("simulate", help="serve every configured device over its real protocol")
    simulate.add_argument("-c", "--config", type=Path, default=DEMO_CONFIG)
    simulate.add_argument("--endpoints", type=Path, help="write the endpoints as JSON to this file")
    simulate.add_argument("--seed", type=int, help="seed the physics for repeatable runs")
    _simulation_options(simulate)
    simulate.set_defaults(handler=cmd_simulate)

    scenario = sub.add_parser("scenario", help="list, start or stop scenarios in a running simulate/demo")
    scenario.add_argument("-c", "--config", type=Path, default=DEMO_CONFIG, help="where its control endpoint is")
    scenario.add_argument("action", choices=["list", "start", "stop"])
    scenario.add_argument("name", nargs="?", help="the scenario to start")
    scenario.set_defaults(handler=cmd_scenario)

    demo = sub.add_parser("demo", help="simulated site + collectors + store + dashboard in one process")
    demo.add_argument("-c", "--config", type=Path, default=DEMO_CONFIG)
    demo.add_argument("--data-dir", type=Path, help="where the SQLite file goes (default: the config's)")
    demo.add_argument("--port", type=int, help="dashboard port (default: the config's, 8050)")
    _simulation_options(demo)
    _notify_option(demo)
    demo.set_defaults(handler=cmd_demo)

    run = sub.add_parser("run", help="production: collectors + store + dashboard")
    run.add_argument("-c", "--config", required=True, type=Path)
    run.add_argument("--no-dashboard", action="store_true")
    run.add_argument("--data-dir", type=Path)
    _notify_option(run)
    _metrics_option(run)
    add_change_options(run)
    run.set_defaults(handler=cmd_run)

    collect = sub.add_parser("collect", help="collectors + store only")
    collect.add_argument("-c", "--config", required=True, type=Path)
    collect.add_argument("--data-dir", type=Path)
    collect.add_argument("--shard", type=shard_argument, default=Shard(1, 1), metavar="I/N",
                         help="poll only the devices of shard I of N (by a stable hash of the device id); "
                              "each shard keeps its own SQLite file and InfluxDB spool")
    _notify_option(collect)
    _metrics_option(collect)
    add_change_options(collect)
    collect.set_defaults(handler=cmd_run, no_dashboard=True)

    alerts = sub.add_parser("alerts", help="alerts: list, acknowledge, silence, history; rule tests")
    alerts_sub = alerts.add_subparsers(required=True, metavar="ACTION")
    alerts_test = alerts_sub.add_parser("test", help="run rule tests: input series on a timeline → expected alerts")
    alerts_test.add_argument("files", nargs="+", type=Path)
    alerts_test.set_defaults(handler=cmd_alerts_test)
    _operator_commands(alerts_sub)

    dash = sub.add_parser("dashboard", help="the dashboard alone, reading the store another process writes")
    dash.add_argument("-c", "--config", required=True, type=Path)
    dash.add_argument("--data-dir", type=Path)
    dash.add_argument("--port", type=int)
    dash.add_argument("--shards", type=_shard_count, metavar="N",
                      help="read the alerts and heartbeats of N collector shards (collect --shard i/N); "
                           "default: the shard files found next to the store, else none")
    dash.set_defaults(handler=cmd_dashboard)
    add_evidence_parser(sub)
    add_drill_parser(sub)
    add_auth_parsers(sub)
    add_certs_parser(sub)
    return parser


def _operator_commands(alerts_sub) -> None:
    """``facwatch alerts list|ack|silence|silences|expire|history``: operator actions through the store."""
    from alerts.commands import SEVERITIES

    listing = _store_parser(alerts_sub, "list", "alerts pending or firing (--all: every stored alert)")
    listing.add_argument("--all", action="store_true", help="also resolved and inactive alerts")
    listing.set_defaults(handler=cmd_alerts_list)

    ack = _store_parser(alerts_sub, "ack", "acknowledge an alert (applied by the running collector)")
    ack.add_argument("fingerprint", help="the alert's fingerprint (or a unique prefix) from `facwatch alerts list`")
    _author_options(ack)
    ack.add_argument("--note", default="", help="what you are doing about it")
    ack.set_defaults(handler=cmd_alerts_ack)

    silence = _store_parser(alerts_sub, "silence", "mute notifications of matching alerts until an expiry")
    silence.add_argument("--match", action="append", required=True, metavar="KEY=VALUE",
                         help="a label that must be equal (repeat for more; alertname=RULE matches the rule)")
    until = silence.add_mutually_exclusive_group(required=True)
    until.add_argument("--for", dest="duration", metavar="DURATION", help="how long, e.g. 30m, 2h, 1d (≤ 31 days)")
    until.add_argument("--until", metavar="ISO", help="end time, e.g. 2026-11-23T06:00 (local time without offset)")
    silence.add_argument("--reason", required=True, help="why (a ticket, a change number)")
    _author_options(silence)
    silence.add_argument("--maintenance", action="store_true", help="record it as a maintenance window")
    silence.add_argument("--severity", action="append", choices=SEVERITIES,
                         help="mute only these severities (repeat for more; default: all)")
    silence.set_defaults(handler=cmd_alerts_silence)

    silences = _store_parser(alerts_sub, "silences", "active and upcoming silences (--all: also ended ones)")
    silences.add_argument("--all", action="store_true")
    silences.set_defaults(handler=cmd_alerts_silences)

    expire = _store_parser(alerts_sub, "expire", "end a silence or maintenance window now")
    expire.add_argument("silence_id", type=int, metavar="ID")
    _author_options(expire)
    expire.set_defaults(handler=cmd_alerts_expire)

    history = _store_parser(alerts_sub, "history", "who did what: operator commands with their outcome")
    history.add_argument("--limit", type=int, default=50)
    history.set_defaults(handler=cmd_alerts_history)


def _store_parser(sub, name: str, help_text: str) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=help_text, description=help_text)
    parser.add_argument("-c", "--config", type=Path, default=DEMO_CONFIG, help="site config (finds the store)")
    parser.add_argument("--data-dir", type=Path, help="the folder of facwatch.db, as given to run/demo")
    parser.add_argument("--shards", type=_shard_count, metavar="N",
                        help="a sharded site (collect --shard i/N): every shard's alerts and commands; "
                             "default: the shard files found next to the store, else none")
    return parser


def _author_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--by", required=True, metavar="NAME", help="who you are (recorded with the action)")
    parser.add_argument("--wait", action="store_true",
                        help="wait (up to 10 s) for the collector to apply it and print the outcome")


def _notify_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--notify", type=Path, help="notification config (receivers, routes); alerts are "
                                                      "logged without it, e.g. config/notify.yaml")


def _metrics_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--metrics", metavar="HOST:PORT",
                        help="serve Prometheus /metrics on this address, e.g. 127.0.0.1:9464 (default: off)")


def _shard_count(text: str) -> int:
    """``--shards N``: how many collector shards the dashboard reads."""
    try:
        return Shard(1, int(text)).count
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--shards takes a number of shards, e.g. 2 ({exc})") from exc


def _simulation_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scenario", help="start this scenario at once (see `facwatch scenario list`)")
    parser.add_argument("--time-scale", type=float, help="simulated seconds per wall second (default: the config's)")


def cmd_check(args: argparse.Namespace) -> int:
    """``facwatch check``: exit 0 with a summary, or 2 with every problem listed."""
    site = load_site(args.config)
    profiles = sorted({d.profile for d in site.devices})
    print(f"{args.config}: OK — site {site.config.site.id!r}, {len(site.devices)} devices, "
          f"{len(site.config.rooms)} rooms, profiles: {', '.join(profiles) or 'none'}")
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    """``facwatch simulate``: serve the site's devices until interrupted."""
    site = load_site(args.config)
    asyncio.run(_simulate(site, args))
    return 0


async def _simulate(site: Site, args: argparse.Namespace) -> None:
    from facwatch.runtime import simulation, wait_for_signal

    endpoints_path = args.endpoints
    async with simulation(site, seed=args.seed, time_scale=args.time_scale, scenario=args.scenario) as sim:
        endpoints = sim.endpoints()
        print(format_endpoints(endpoints), flush=True)
        if endpoints_path is not None:
            endpoints_path.write_text(json.dumps(endpoints, indent=2) + "\n", encoding="utf-8")
            print(f"endpoints written to {endpoints_path}", flush=True)
        await wait_for_signal()


def format_endpoints(endpoints: list[dict]) -> str:
    """A fixed-width table of simulator endpoints, one device per line."""
    rows = [("DEVICE", "PROTOCOL", "ADDRESS", "UNIT", "PROFILE")]
    for e in endpoints:
        rows.append((e["device"], e["protocol"], f"{e['host']}:{e['port']}", str(e.get("unit_id", "")), e["profile"]))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def cmd_demo(args: argparse.Namespace) -> int:
    """``facwatch demo``: the whole simulated site with a live dashboard."""
    from facwatch.runtime import run_site

    site = load_site(args.config)
    if not _dashboard_allowed(site, args.data_dir):
        return 2
    port = args.port or site.config.dashboard.port
    scheme = "https" if site.dashboard_tls is not None else "http"
    print(f"facwatch demo: open {scheme}://{site.config.dashboard.host}:{port}/  (Ctrl-C to stop)", flush=True)
    asyncio.run(run_site(site, simulate=True, dashboard=True, data_dir=args.data_dir, port=port,
                         time_scale=args.time_scale, scenario=args.scenario, notify=args.notify))
    return 0


def cmd_alerts_test(args: argparse.Namespace) -> int:
    """``facwatch alerts test``: exit 0 when every rule test passes, 1 when one fails."""
    from alerts.ruletest import run_rule_tests

    all_ok = True
    for path in args.files:
        ok, text = run_rule_tests(path)
        print(text)
        all_ok = all_ok and ok
    return 0 if all_ok else 1


def _store_file(site: Site, data_dir: Path | None) -> Path:
    """The SQLite file of the site, which must exist: a command nobody will apply is worse than an error."""
    from facwatch.runtime import store_path

    path = store_path(site, data_dir)
    if not path.exists():
        raise _UsageError(f"no facwatch store at {path}: is `facwatch run/demo` running with this config "
                          "(and --data-dir)?")
    return path


class _UsageError(Exception):
    """A problem with what the operator asked for: printed, exit status 2."""


class _SiteStore:
    """The site's alerts and operator commands: its SQLite file, or every shard's as one (alerts/sharded.py)."""

    def __init__(self, args: argparse.Namespace):
        site = load_site(args.config)
        self.shards = _operator_shards(site, args.data_dir, getattr(args, "shards", None))
        self.path = None if self.shards is not None else _store_file(site, args.data_dir)

    @functools.cached_property
    def alerts(self):
        """AlertStateStore of the file, or ShardedAlertState (opened on first use)."""
        if self.shards is None:
            from alerts.state import AlertStateStore

            return AlertStateStore(self.path)
        from alerts.sharded import ShardedAlertState

        return ShardedAlertState(self.shards)

    @functools.cached_property
    def actions(self):
        """ActionStore of the file, or ShardedActions routing to the shards (opened on first use)."""
        if self.shards is None:
            from alerts.commands import ActionStore

            return ActionStore(self.path)
        from alerts.sharded import ShardedActions

        return ShardedActions(self.shards, self.alerts)

    def sent(self, command_id: int) -> list[_Sent]:
        """Each command the last request queued (sharded: one per shard it went to)."""
        if self.shards is None:
            return [_Sent(command_id, lambda: self.actions.history(50))]
        return [_Sent(sent_id, _shard_history(file), file.shard) for file, sent_id in self.actions.last_sent()]

    def close(self) -> None:
        """Close what was opened; say which shards could not be read (their part is missing above)."""
        for store in ("alerts", "actions"):
            if store in self.__dict__:
                self.__dict__[store].close()
        if self.shards is not None:
            for name in self.shards.unavailable_shards():
                print(f"facwatch alerts: warning: shard {name} could not be read (see the error above); "
                      "its alerts, silences and commands are left out", file=sys.stderr)
            self.shards.close()


@dataclass(frozen=True)
class _Sent:
    """A queued command: its number in the file that holds it, that file's history, its shard (None: unsharded)."""

    command_id: int
    history: Callable[[], list]
    shard: Shard | None = None

    @property
    def prefix(self) -> str:
        """``shard 2/2: `` before what is printed about it; nothing on an unsharded site."""
        return "" if self.shard is None else f"shard {self.shard.index}/{self.shard.count}: "

    @property
    def applier(self) -> str:
        """The heartbeat of the alerting loop that applies it."""
        return "alerting" if self.shard is None else f"alerting@{self.shard.label}"


@contextmanager
def _site_store(args: argparse.Namespace) -> Iterator[_SiteStore]:
    store = _SiteStore(args)
    try:
        yield store
    finally:
        store.close()


def _operator_shards(site: Site, data_dir: Path | None, count: int | None):
    """The shard files of a sharded site as the dashboard finds them (None: unsharded); one must exist."""
    from alerts.sharded import ShardSet

    paths = _shard_paths(site, data_dir, count)
    if paths is None:
        return None
    if not any(path.is_file() for path in paths.values()):
        where = ", ".join(str(path) for path in paths.values())
        raise _UsageError(f"no shard file of a {len(paths)}-way split ({where}): is `facwatch collect --shard "
                          f"i/{len(paths)}` running with this config (and --data-dir)?")
    return ShardSet.open(paths)


def _shard_history(file) -> Callable[[], list]:
    from alerts.sharded import ShardUnavailable

    def history() -> list:
        try:
            return file.use_actions(lambda actions: actions.history(50))
        except ShardUnavailable:
            return []  # not applied as far as we can tell: _wait says so after 10 s

    return history


def _operator(handler):
    """Print validation errors and exit 2, as argparse does for bad arguments (1: no shard could be read)."""
    def run(args: argparse.Namespace) -> int:
        from alerts.sharded import ShardUnavailable

        try:
            return handler(args)
        except (_UsageError, ValueError) as exc:
            print(f"facwatch alerts: {exc}", file=sys.stderr)
            return 2
        except ShardUnavailable as exc:
            print(f"facwatch alerts: no shard could be read: {exc}", file=sys.stderr)
            return 1
    run.__doc__ = handler.__doc__
    return run


def _when(ts: float | None) -> str:
    """A Unix time as local time to the second; '-' for none."""
    import datetime as dt

    return "-" if ts is None else dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def _source() -> str:
    import getpass
    import socket

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"cli {user}@{socket.gethostname()}"


@_operator
def cmd_alerts_list(args: argparse.Namespace) -> int:
    """``facwatch alerts list``: the stored alerts, firing first (a sharded site: with the shard holding each)."""
    with _site_store(args) as store:
        located = _located(store)
    alerts = [alert for alert, _ in located.values()]
    if not args.all:
        alerts = [a for a in alerts if a.state.value in ("pending", "firing")]
    order = {"firing": 0, "pending": 1, "resolved": 2, "inactive": 3}
    rank = {"critical": 0, "warning": 1, "info": 2}
    alerts.sort(key=lambda a: (order.get(a.state.value, 9), rank.get(a.severity.value, 9), -_since(a)))
    sharded = store.shards is not None
    rows = [("FINGERPRINT", "RULE", "STATE", "SEVERITY", "SINCE", "ACKED BY") + (("SHARD",) if sharded else ())
            + ("LABELS",)]
    for a in alerts:
        labels = " ".join(f"{k}={v}" for k, v in sorted(a.labels.items()) if k != "site")
        shard = (located[a.fingerprint][1],) if sharded else ()
        rows.append((a.fingerprint, a.rule, a.state.value, a.severity.value, _when(_since(a) or None),
                     a.acknowledged_by or "-", *shard, labels))
    print(_table(rows) if alerts else "no alerts" + ("" if args.all else " pending or firing (--all for every one)"))
    return 0


def _located(store: _SiteStore) -> dict:
    """Fingerprint → (alert, the name of the shard holding it; "" for an unsharded site)."""
    if store.shards is None:
        return {fp: (alert, "") for fp, alert in store.alerts.load().items()}
    return {fp: (alert, file.name) for fp, (alert, file) in store.alerts.located().items()}


def _since(alert) -> float:
    times = {"firing": alert.fired_at, "pending": alert.active_since, "resolved": alert.resolved_at}
    return times.get(alert.state.value) or alert.updated_at or 0.0


def _fingerprint(store: _SiteStore, given: str) -> str:
    """A unique prefix expanded to the full fingerprint; anything else as given (the applier judges it)."""
    found = [fp for fp in store.alerts.load() if fp.startswith(given)]
    if len(found) > 1 and given not in found:
        raise _UsageError(f"fingerprint prefix {given!r} matches {len(found)} alerts: give more of it")
    return found[0] if len(found) == 1 else given


@_operator
def cmd_alerts_ack(args: argparse.Namespace) -> int:
    """``facwatch alerts ack FP --by NAME``: queue an acknowledgement (sharded: in the shard holding the alert)."""
    with _site_store(args) as store:
        fp = _fingerprint(store, args.fingerprint)
        return _request(args, store, lambda actions: actions.request_ack(fp, args.by, args.note, source=_source()),
                        f"acknowledge {fp}")


@_operator
def cmd_alerts_silence(args: argparse.Namespace) -> int:
    """``facwatch alerts silence --match k=v (--for D | --until T) --reason R --by NAME``: queue a silence."""
    import time

    from config.durations import parse_duration

    matchers = {}
    for item in args.match:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise _UsageError(f"--match {item!r}: write it as key=value, e.g. device=dh1-ups-a")
        matchers[key.strip()] = value.strip()
    now = time.time()
    ends_at = now + parse_duration(args.duration) if args.duration else _iso_time(args.until)
    kind = "maintenance" if args.maintenance else "silence"
    severities = tuple(args.severity) if args.severity else None
    what = f"{kind} of {', '.join(f'{k}={v}' for k, v in matchers.items())} until {_when(ends_at)}"
    with _site_store(args) as store:  # sharded: every shard, or none when one cannot be reached
        return _request(args, store, lambda actions: actions.request_silence(
            matchers, ends_at, args.reason, args.by, kind=kind, severities=severities, source=_source()), what)


def _iso_time(text: str) -> float:
    import datetime as dt

    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise _UsageError(f"--until {text!r}: not an ISO 8601 time like 2026-11-23T06:00") from None
    return when.timestamp()  # without an offset: local time


@_operator
def cmd_alerts_expire(args: argparse.Namespace) -> int:
    """``facwatch alerts expire ID --by NAME``: queue the end of a silence (sharded: in every shard holding it)."""
    with _site_store(args) as store:
        return _request(args, store, lambda actions: actions.request_expire(
            args.silence_id, args.by, source=_source()), f"expire silence #{args.silence_id}")


def _request(args: argparse.Namespace, store: _SiteStore, ask, what: str) -> int:
    command_id = ask(store.actions)
    sent = store.sent(command_id)
    if store.shards is None:
        print(f"command #{command_id} queued: {what}. The running collector applies it within a second "
              "(see `facwatch alerts history`).")
    else:
        where = " and ".join(f"{c.shard.index}/{c.shard.count} as #{c.command_id}" for c in sent if c.shard)
        print(f"command queued in shard {where}: {what}. The running collectors apply it within a second "
              "(see `facwatch alerts history`).")
    _warn_if_not_alerting(store, sent)
    return _wait(sent) if args.wait else 0


def _warn_if_not_alerting(store: _SiteStore, sent: list[_Sent]) -> None:
    """Say so when an alerting loop that applies the command is not running (its heartbeat is old)."""
    import time

    beats = store.actions.heartbeats()
    for command in sent:
        beat = beats.get(command.applier)
        if beat is None or time.time() - beat.at > 10:
            since = "never" if beat is None else f"last at {_when(beat.at)}"
            loop = f"the alerting loop of {command.prefix[:-2]}" if command.shard else "the alerting loop"
            print(f"warning: {loop} is not running ({since}); the command waits until it is.", file=sys.stderr)


def _wait(sent: list[_Sent]) -> int:
    """Wait up to 10 s for every queued command's outcome; 0 when all were applied."""
    import time

    deadline = time.monotonic() + 10
    outcomes: dict[int, str] = {}
    while True:
        for index, command in enumerate(sent):
            done = None if index in outcomes else next(
                (c for c in command.history() if c.id == command.command_id and c.outcome), None)
            if done is not None:
                outcomes[index] = done.outcome
                print(f"{command.prefix}command #{command.command_id} {done.outcome}: {done.detail}")
        if len(outcomes) == len(sent):
            return 0 if all(outcome == "applied" for outcome in outcomes.values()) else 1
        if time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    for index, command in enumerate(sent):
        if index not in outcomes:
            print(f"{command.prefix}command #{command.command_id} not applied within 10 s (is the collector "
                  "running?)", file=sys.stderr)
    return 1


@_operator
def cmd_alerts_silences(args: argparse.Namespace) -> int:
    """``facwatch alerts silences``: active and upcoming silences (``--all``: also ended; sharded: merged)."""
    import time

    with _site_store(args) as store:
        records = store.actions.silences(include_ended=args.all)
    now = time.time()
    rows = [("ID", "KIND", "STATE", "MATCHERS", "SEVERITY", "STARTS", "ENDS", "BY", "REASON")]
    for r in records:
        state = "active" if r.active(now) else "upcoming" if r.starts_at > now else (
            f"expired by {r.expired_by}" if r.expired_by else "ended")
        rows.append((str(r.id), r.kind, state, " ".join(f"{k}={v}" for k, v in sorted(r.matchers.items())),
                     ",".join(r.severities) if r.severities else "all", _when(r.starts_at), _when(r.ended_at),
                     r.author, r.reason))
    print(_table(rows) if records else "no silences" + ("" if args.all else " active or upcoming (--all for ended)"))
    return 0


@_operator
def cmd_alerts_history(args: argparse.Namespace) -> int:
    """``facwatch alerts history``: operator commands, newest first, with their outcome (sharded: merged)."""
    with _site_store(args) as store:
        commands = store.actions.history(args.limit)
    rows = [("ID", "REQUESTED", "BY", "SOURCE", "ACTION", "OUTCOME", "DETAIL")]
    for c in commands:
        rows.append((str(c.id), _when(c.requested_at), c.author, c.source, _describe(c), c.outcome or "pending",
                     c.detail or ""))
    print(_table(rows) if commands else "no operator commands yet")
    return 0


def _describe(command) -> str:
    p = command.payload
    if command.kind == "ack":
        return f"ack {p.get('fingerprint')}" + (f" ({p['note']})" if p.get("note") else "")
    if command.kind == "silence":
        matchers = ",".join(f"{k}={v}" for k, v in dict(p.get("matchers") or {}).items())
        return f"{p.get('kind', 'silence')} {matchers} until {_when(p.get('ends_at'))}: {p.get('reason')}"
    if command.kind == "expire_silence":
        return f"expire silence #{p.get('silence_id')}"
    return command.kind


def cmd_scenario(args: argparse.Namespace) -> int:
    """``facwatch scenario``: talk to the control endpoint of a running simulate or demo."""
    site = load_site(args.config)
    base = f"http://{site.config.simulation.control}/scenarios"
    if args.action == "start" and not args.name:
        print("facwatch scenario start NAME: which scenario? (facwatch scenario list)", file=sys.stderr)
        return 2
    path = {"list": "", "start": f"/{args.name}/start", "stop": "/stop"}[args.action]
    status, body = _http(base + path, post=args.action != "list")
    if args.action == "list" and status == 200:
        print(f"active: {body['active'] or '-'}   simulated clock: {body['clock_s']} s   ×{body['time_scale']}")
        for name, description in body["scenarios"].items():
            print(f"  {name:32} {description.split('. ')[0].rstrip('.')}.")
    else:
        print(json.dumps(body))
    return 0 if status < 300 else 1


def _http(url: str, post: bool) -> tuple[int, dict]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, method="POST" if post else "GET")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")
    except urllib.error.URLError as exc:
        return 599, {"error": f"no simulator answering at {url}: {exc.reason} (is facwatch simulate/demo running?)"}


def cmd_run(args: argparse.Namespace) -> int:
    """``facwatch run`` and ``facwatch collect``: collectors + store (+ dashboard)."""
    from alerts.rules import load_rules
    from facwatch.runtime import run_site

    shard: Shard = getattr(args, "shard", Shard(1, 1))
    whole = load_site(args.config)
    site = shard_site(whole, shard, load_rules() if shard.count > 1 else ())  # rules that combine devices
    data_dir = shard_data_dir(args.data_dir, shard) if args.data_dir else None
    if not args.no_dashboard and not _dashboard_allowed(site, data_dir):
        return 2
    asyncio.run(run_site(site, simulate=False, dashboard=not args.no_dashboard, data_dir=data_dir,
                         notify=args.notify, change_by=args.change_by, change_reason=args.change_reason,
                         metrics_listen=args.metrics, shard=f"{shard.index}/{shard.count}", whole_site=whole))
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    """``facwatch dashboard``: serve the dashboard from the store until interrupted."""
    from facwatch.runtime import open_reading_store, open_store, start_dashboard, wait_for_signal

    site = load_site(args.config)
    if not _dashboard_allowed(site, args.data_dir):
        return 2
    try:
        shards = _dashboard_shards(site, args.data_dir, getattr(args, "shards", None))
    except ValueError as exc:
        print(f"facwatch: not starting the dashboard: {exc}", file=sys.stderr)
        return 2
    store = open_store(site, args.data_dir)
    readings = open_reading_store(site, store, send=False)  # every shard's readings, with storage.influx
    alerts = actions = None
    if shards is not None:
        from alerts.sharded import ShardedActions, ShardedAlertState

        alerts = ShardedAlertState(shards)
        actions = ShardedActions(shards, alerts)
    web = start_dashboard(site, store, port=args.port, readings=readings, alerts=alerts, actions=actions)
    print(f"dashboard on {web.url}", flush=True)
    try:
        asyncio.run(wait_for_signal())
    finally:
        web.stop()
        if readings is not store:
            readings.close()
        if shards is not None:
            shards.close()
        store.close()
    return 0


def _shard_paths(site: Site, data_dir: Path | None, count: int | None) -> dict[Shard, Path] | None:
    """Where the collector shards keep their files (None: an unsharded site); ValueError when ambiguous.

    ``count`` is ``--shards N``; without it, the shard files found next to the store (or under data_dir).
    """
    from alerts.sharded import discover_shard_count, shard_files

    if count is None:
        count = discover_shard_count(site.storage_path(), data_dir)  # ShardCountAmbiguous is a ValueError
    if count is None or count == 1:
        return None
    return shard_files(site.storage_path(), data_dir, count)


def _dashboard_shards(site: Site, data_dir: Path | None, count: int | None):
    """The collector shards' files the dashboard reads alerts from (None: an unsharded site); printed."""
    from alerts.sharded import ShardSet

    paths = _shard_paths(site, data_dir, count)
    if paths is None:
        return None
    for shard, path in paths.items():
        print(f"dashboard: shard {shard.index}/{shard.count} alerts and heartbeats from {path}"
              + ("" if path.is_file() else " (missing: shown as unavailable)"), flush=True)
    return ShardSet.open(paths)


def _dashboard_allowed(site: Site, data_dir: Path | None) -> bool:
    """Check the dashboard's access policy before anything starts; print why not (accounts, HTTPS)."""
    from dashboard.serve import ServeRefused, WebSecurity, count_users, web_access
    from facwatch.runtime import store_path

    cfg = site.config.dashboard
    path = store_path(site, data_dir)
    try:
        access = web_access(count_users(path), cfg.host, WebSecurity(
            tuple(cfg.trusted_proxies), cfg.secure_cookies, tls=site.dashboard_tls is not None))
    except (ServeRefused, ValueError) as exc:
        print(f"facwatch: not starting the dashboard: {exc}", file=sys.stderr)
        return False
    if access.accounts:
        print("dashboard: accounts on (sign in; wall screens use kiosk tokens)", flush=True)
    if site.dashboard_tls is not None:
        print(f"dashboard: HTTPS with {site.dashboard_tls.cert_file}", flush=True)
    return True


def _quiet_libraries() -> None:
    """Silence pysnmp and pymodbus timeout logs: our scheduler reports once per outage instead."""
    for name in ("pymodbus", "pysnmp", "waitress.queue"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


if __name__ == "__main__":
    sys.exit(main())
