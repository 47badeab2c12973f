from __future__ import annotations

import pytest
from pydantic import ValidationError

from storage.influx_config import InfluxConfig, resolve_influx

MINIMAL = {"url": "https://influx.dc1.example:8086", "token": {"env": "INFLUX_TOKEN"}, "database": "facwatch"}


def config(**changes: object) -> InfluxConfig:
    return InfluxConfig.model_validate({**MINIMAL, **changes})


def error_of(**changes: object) -> str:
    with pytest.raises(ValidationError) as info:
        InfluxConfig.model_validate({k: v for k, v in {**MINIMAL, **changes}.items() if v is not None})
    return str(info.value)


def test_minimal_config_has_safe_defaults():
    c = config()
    assert (c.org, c.write_bucket, c.tls.verify, c.retention_days) == ("-", "facwatch", True, None)
    assert c.spool.max_lines == 20_000_000


def test_write_bucket_follows_the_18_database_slash_policy_form():
    assert config(retention_policy="one_year").write_bucket == "facwatch/one_year"
    assert config(bucket="fw-bucket", retention_policy="x").write_bucket == "fw-bucket"


@pytest.mark.parametrize(("changes", "message"), [
    ({"token": None}, "give token (InfluxDB 2.x/3.x) or username + password"),
    ({"username": "fw", "password": {"env": "P"}}, "either token or username + password"),
    ({"token": None, "username": "fw"}, "username needs a password"),
    ({"token": None, "password": {"env": "P"}}, "password needs a username"),
    ({"token": "s3cret-inline"}, "secrets are never written inline"),
    ({"url": "influx:8086"}, "must be an http:// or https:// URL"),
    ({"url": "http://influx:8086", "tls": {"ca_file": "ca.pem"}}, "tls options apply to https:// URLs only"),
    ({"tls": {"verify": "no"}}, "verify"),
    ({"batch_lines": 0}, "must be an integer 1–100000"),
    ({"spool": {"max_lines": 10}}, "1000"),
    ({"databse": "typo"}, "Extra inputs are not permitted"),
    ({"retention_days": 0}, "more than 0"),
])
def test_bad_configs_are_refused_with_a_reason(changes, message):
    assert message in error_of(**changes)


def test_secrets_are_read_from_env_and_files_and_never_printed(tmp_path, monkeypatch):
    monkeypatch.setenv("INFLUX_TOKEN", "tok-123")
    (tmp_path / "pw").write_text("hunter2\n")
    site = tmp_path / "site.yaml"
    token_conn, problems = resolve_influx(config(), site)
    assert problems == [] and token_conn.write_token.reveal() == "tok-123"
    assert "tok-123" not in repr(token_conn)
    v1 = config(token=None, username="fw", password={"file": "pw"})
    v1_conn, problems = resolve_influx(v1, site)
    assert problems == [] and v1_conn.write_token.reveal() == "fw:hunter2"  # InfluxDB 1.8's token form
    assert v1_conn.spool_path == tmp_path / "var" / "influx-spool.db"


def test_unreadable_secrets_and_missing_ca_are_problems(tmp_path, monkeypatch):
    monkeypatch.delenv("INFLUX_TOKEN", raising=False)
    _, problems = resolve_influx(config(tls={"ca_file": "missing-ca.pem"}), tmp_path / "site.yaml")
    assert problems == ["storage.influx.token: environment variable INFLUX_TOKEN is not set",
                        "storage.influx.tls.ca_file: missing-ca.pem does not exist"]
