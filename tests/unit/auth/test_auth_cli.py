from __future__ import annotations

import argparse
import io
from pathlib import Path

import pytest

from auth import cli
from auth.db import Database
from auth.service import AuthService
from evidence.auditlog import AuditLog

PASSWORD = "a cli password long enough"


def run(argv: list[str], data_dir: Path, monkeypatch: pytest.MonkeyPatch, stdin: str = "") -> int:
    parser = argparse.ArgumentParser(prog="facwatch")
    cli.add_parser(parser.add_subparsers(required=True))
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    args = parser.parse_args([*argv[:1], "--data-dir", str(data_dir), *argv[1:]])
    return args.handler(args)


def test_users_add_list_passwd_disable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture) -> None:
    assert run(["users", "add", "otto", "--role", "operator", "--password-stdin"], tmp_path, monkeypatch,
               PASSWORD + "\n") == 0
    assert run(["users", "list"], tmp_path, monkeypatch) == 0
    assert "otto  operator  enabled" in capsys.readouterr().out
    assert run(["users", "passwd", "otto", "--password-stdin"], tmp_path, monkeypatch, "another password 123\n") == 0
    assert run(["users", "disable", "otto"], tmp_path, monkeypatch) == 0
    service = AuthService(Database(tmp_path / "facwatch.db"))
    assert not service.user("otto").enabled
    assert PASSWORD not in capsys.readouterr().out
    with AuditLog.open(tmp_path / "facwatch.db") as audit:  # the hash-chained log, not the fallback table
        actions = [e.action for e in audit.entries()]
    assert actions == ["user.add", "user.password", "user.disable"]
    assert PASSWORD not in (tmp_path / "facwatch.db").read_bytes().decode("latin-1")


def test_password_is_never_an_argument() -> None:
    parser = argparse.ArgumentParser(prog="facwatch")
    cli.add_parser(parser.add_subparsers(required=True))
    with pytest.raises(SystemExit):
        parser.parse_args(["users", "add", "otto", "--role", "viewer", "--password", "x"])


def test_weak_password_and_unknown_user_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture) -> None:
    assert run(["users", "add", "otto", "--role", "viewer", "--password-stdin"], tmp_path, monkeypatch, "short\n") == 2
    assert run(["users", "disable", "nobody"], tmp_path, monkeypatch) == 2
    err = capsys.readouterr().err
    assert "at least 12 characters" in err and "no user 'nobody'" in err and "short" not in err.replace(
        "at least", "")


def test_prompted_password_must_be_typed_twice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    answers = iter([PASSWORD, PASSWORD + "!"])
    monkeypatch.setattr(cli.getpass, "getpass", lambda prompt: next(answers))
    assert run(["users", "add", "otto", "--role", "viewer"], tmp_path, monkeypatch) == 2


def test_tokens_create_list_revoke(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture) -> None:
    assert run(["tokens", "create", "--name", "NOC-1", "--network", "10.0.9.0/24"], tmp_path, monkeypatch) == 0
    token = capsys.readouterr().out.splitlines()[1]
    service = AuthService(Database(tmp_path / "facwatch.db"))
    assert service.kiosk_identity(token, "10.0.9.4")[0] is not None
    assert run(["tokens", "list"], tmp_path, monkeypatch) == 0
    listed = capsys.readouterr().out
    assert "NOC-1" in listed and "active" in listed and "10.0.9.0/24" in listed and token not in listed
    assert run(["tokens", "revoke", "NOC-1"], tmp_path, monkeypatch) == 0
    assert service.kiosk_identity(token, "10.0.9.4")[0] is None
    assert run(["tokens", "revoke", "NOC-1"], tmp_path, monkeypatch) == 2


def test_store_is_found_from_the_site_config(tmp_path: Path) -> None:
    args = argparse.Namespace(data_dir=None, config=cli.DEMO_CONFIG)
    assert cli.store_path(args).name.endswith(".db")
