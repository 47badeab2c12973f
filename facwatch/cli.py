"""The ``facwatch`` command line."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from config.load import Site, load_site
from config.yamlfile import ConfigError

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
    run.set_defaults(handler=cmd_run)

    collect = sub.add_parser("collect", help="collectors + store only")
    collect.add_argument("-c", "--config", required=True, type=Path)
    collect.add_argument("--data-dir", type=Path)
    _notify_option(collect)
    collect.set_defaults(handler=cmd_run, no_dashboard=True)

    alerts = sub.add_parser("alerts", help="alert rules: run YAML rule tests (like promtool test rules)")
    alerts_sub = alerts.add_subparsers(required=True, metavar="ACTION")
    alerts_test = alerts_sub.add_parser("test", help="run rule tests: input series on a timeline → expected alerts")
    alerts_test.add_argument("files", nargs="+", type=Path)
    alerts_test.set_defaults(handler=cmd_alerts_test)

    dash = sub.add_parser("dashboard", help="the dashboard alone, reading the store another process writes")
    dash.add_argument("-c", "--config", required=True, type=Path)
    dash.add_argument("--data-dir", type=Path)
    dash.add_argument("--port", type=int)
    dash.set_defaults(handler=cmd_dashboard)
    return parser


def _notify_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--notify", type=Path, help="notification config (receivers, routes); alerts are "
                                                      "logged without it, e.g. config/notify.yaml")


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
    port = args.port or site.config.dashboard.port
    print(f"facwatch demo: open http://{site.config.dashboard.host}:{port}/  (Ctrl-C to stop)", flush=True)
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
    from facwatch.runtime import run_site

    site = load_site(args.config)
    asyncio.run(run_site(site, simulate=False, dashboard=not args.no_dashboard, data_dir=args.data_dir,
                         notify=args.notify))
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    """``facwatch dashboard``: serve the dashboard from the store until interrupted."""
    from facwatch.runtime import open_store, start_dashboard, wait_for_signal

    site = load_site(args.config)
    store = open_store(site, args.data_dir)
    web = start_dashboard(site, store, port=args.port)
    print(f"dashboard on http://{site.config.dashboard.host}:{args.port or site.config.dashboard.port}/", flush=True)
    try:
        asyncio.run(wait_for_signal())
    finally:
        web.stop()
        store.close()
    return 0


def _quiet_libraries() -> None:
    """Silence pysnmp and pymodbus timeout logs: our scheduler reports once per outage instead."""
    for name in ("pymodbus", "pysnmp", "waitress.queue"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


if __name__ == "__main__":
    sys.exit(main())
