"""``facwatch users …`` and ``facwatch tokens …``: accounts and kiosk tokens in the site's SQLite file.

Passwords are read with getpass (or one line from stdin with ``--password-stdin``), never from the
command line, where ``ps`` and shell history would show them. Actions are audited with the local
user as the actor and ``cli user@host`` as the source.
"""

from __future__ import annotations

import argparse
import getpass
import socket
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from auth.model import USER_ROLES
from auth.passwords import policy_problem
from auth.service import AuthService

DEMO_CONFIG = Path(__file__).resolve().parents[1] / "config" / "sites" / "demo.yaml"


def add_parser(subparsers) -> None:
    """Add ``users`` and ``tokens`` to the ``facwatch`` sub-command parsers."""
    users = _with_store(subparsers.add_parser("users", help="dashboard accounts: add, passwd, disable, list"))
    users_sub = users.add_subparsers(required=True, metavar="ACTION")
    add = users_sub.add_parser("add", help="create a user (asks for the password)")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=[r.value for r in USER_ROLES])
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin (one line)")
    add.set_defaults(handler=_handled(cmd_users_add))
    passwd = users_sub.add_parser("passwd", help="set a user's password (ends the user's sessions)")
    passwd.add_argument("name")
    passwd.add_argument("--password-stdin", action="store_true", help="read the password from stdin (one line)")
    passwd.set_defaults(handler=_handled(cmd_users_passwd))
    disable = users_sub.add_parser("disable", help="disable a user (ends the user's sessions)")
    disable.add_argument("name")
    disable.set_defaults(handler=_handled(cmd_users_disable))
    users_sub.add_parser("list", help="list users").set_defaults(handler=_handled(cmd_users_list))

    tokens = _with_store(subparsers.add_parser("tokens", help="kiosk tokens for wall screens: create, list, revoke"))
    tokens_sub = tokens.add_subparsers(required=True, metavar="ACTION")
    create = tokens_sub.add_parser("create", help="create a read-only wall-screen token (printed once)")
    create.add_argument("--name", required=True, help="the screen, e.g. NOC-1")
    create.add_argument("--network", help="only from this network, e.g. 10.0.9.0/24")
    create.add_argument("--expires-days", type=float, help="expire after N days (default: never)")
    create.set_defaults(handler=_handled(cmd_tokens_create))
    tokens_sub.add_parser("list", help="list kiosk tokens").set_defaults(handler=_handled(cmd_tokens_list))
    revoke = tokens_sub.add_parser("revoke", help="revoke a kiosk token (effective on the screen's next request)")
    revoke.add_argument("name")
    revoke.set_defaults(handler=_handled(cmd_tokens_revoke))


def _with_store(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("-c", "--config", type=Path, default=DEMO_CONFIG, help="site config (finds the store)")
    parser.add_argument("--data-dir", type=Path, help="the folder of facwatch.db, as given to run/demo")
    return parser


def _handled(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Print refusals (bad name, weak password, unknown user) and exit 2."""
    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except ValueError as exc:
            print(f"facwatch: {exc}", file=sys.stderr)
            return 2
    run.__doc__ = handler.__doc__
    return run


def store_path(args: argparse.Namespace) -> Path:
    """The site's SQLite file: ``--data-dir/facwatch.db``, else the config's storage path."""
    if args.data_dir is not None:
        return args.data_dir / "facwatch.db"
    from config.load import load_site

    return load_site(args.config).storage_path()


def _service(args: argparse.Namespace) -> AuthService:
    from auth.audit import chained_sink

    path = store_path(args)
    return AuthService.open(path, chained_sink(path))


def _actor() -> tuple[str, str]:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return user, f"cli {user}@{socket.gethostname()}"


def read_password(from_stdin: bool) -> str:
    """A new password from stdin (one line) or typed twice at a prompt; ValueError if unusable."""
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("New password: ")
        if getpass.getpass("Again: ") != password:
            raise ValueError("the passwords differ")
    problem = policy_problem(password)
    if problem:
        raise ValueError(problem)
    return password


def cmd_users_add(args: argparse.Namespace) -> int:
    """``facwatch users add NAME --role ROLE``."""
    service = _service(args)
    password = read_password(args.password_stdin)
    actor, source = _actor()
    user = service.add_user(args.name, args.role, password, actor=actor, source=source)
    print(f"user {user.name} added ({user.role.value})")
    return 0


def cmd_users_passwd(args: argparse.Namespace) -> int:
    """``facwatch users passwd NAME``."""
    service = _service(args)
    if service.user(args.name) is None:
        raise ValueError(f"no user {args.name!r}")
    password = read_password(args.password_stdin)
    actor, source = _actor()
    service.set_password(args.name, password, actor=actor, source=source)
    print(f"password of {args.name} changed; their sessions are ended")
    return 0


def cmd_users_disable(args: argparse.Namespace) -> int:
    """``facwatch users disable NAME``."""
    actor, source = _actor()
    _service(args).disable(args.name, actor=actor, source=source)
    print(f"user {args.name} disabled; their sessions are ended")
    return 0


def cmd_users_list(args: argparse.Namespace) -> int:
    """``facwatch users list``."""
    rows = [("NAME", "ROLE", "STATE", "PASSWORD SET")]
    rows += [(u.name, u.role.value, "enabled" if u.enabled else "disabled", _when(u.password_changed_at))
             for u in _service(args).users()]
    print(_table(rows))
    return 0


def cmd_tokens_create(args: argparse.Namespace) -> int:
    """``facwatch tokens create --name NOC-1``: prints the token once."""
    service = _service(args)
    actor, source = _actor()
    expires = time.time() + args.expires_days * 86400 if args.expires_days else None
    token = service.create_kiosk_token(args.name, actor=actor, source=source, expires_at=expires,
                                       network=args.network)
    print(f"kiosk token {args.name} (shown once; store it in the wall screen's start URL):")
    print(token)
    print(f"open: https://<dashboard>/wall?kiosk={token}")
    return 0


def cmd_tokens_list(args: argparse.Namespace) -> int:
    """``facwatch tokens list``."""
    rows = [("NAME", "STATE", "CREATED", "BY", "EXPIRES", "NETWORK", "LAST USED", "FROM")]
    for t in _service(args).kiosk_tokens():
        state = "active" if t.active else f"revoked {_when(t.revoked_at)}"
        rows.append((t.name, state, _when(t.created_at), t.created_by, _when(t.expires_at), t.network or "any",
                     _when(t.last_used), t.last_source or "-"))
    print(_table(rows))
    return 0


def cmd_tokens_revoke(args: argparse.Namespace) -> int:
    """``facwatch tokens revoke NAME``."""
    actor, source = _actor()
    if not _service(args).revoke_kiosk_token(args.name, actor=actor, source=source):
        raise ValueError(f"no active kiosk token {args.name!r}")
    print(f"kiosk token {args.name} revoked")
    return 0


def _when(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows)
