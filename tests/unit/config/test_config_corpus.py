"""Every bad config in tests/data/bad_configs is refused with exactly the lines in its .err file.

Like Telegraf's ``testcases/*/init.err``: the expected text sits next to each bad config. Each
``.err`` line is a substring (``:LINE: path: message``) of the matching line of the error, in order.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from collectors.profile import DeviceProfile, load_profiles
from config.load import load_site
from config.yamlfile import ConfigError

CORPUS = Path(__file__).resolve().parents[2] / "data" / "bad_configs"
CASES = sorted(CORPUS.glob("*.yaml"))
EXPECTED_LINE = re.compile(r"^:\d+: \S+: \S.*$")  # :LINE: path: message
UNSET_VARIABLE = "FACWATCH_CORPUS_UNSET_KEY"  # named by the env-secret fixtures


@pytest.fixture(scope="module")
def profiles() -> dict[str, DeviceProfile]:
    return load_profiles()


def test_corpus_is_large_and_every_case_has_its_expected_errors() -> None:
    assert len(CASES) >= 20
    assert {p.stem for p in CASES} == {p.stem for p in CORPUS.glob("*.err")}
    for err in CORPUS.glob("*.err"):
        lines = err.read_text(encoding="utf-8").splitlines()
        assert lines, f"{err.name} is empty"
        bad = [line for line in lines if not EXPECTED_LINE.match(line)]
        assert not bad, f"{err.name}: lines without :LINE: path: message: {bad}"


@pytest.mark.parametrize("config", CASES, ids=lambda path: path.stem)
def test_bad_config_is_refused_with_exactly_the_expected_lines(
    config: Path, profiles: dict[str, DeviceProfile], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(UNSET_VARIABLE, raising=False)
    expected = config.with_suffix(".err").read_text(encoding="utf-8").splitlines()

    with pytest.raises(ConfigError) as caught:
        load_site(config, profiles)

    actual = str(caught.value).splitlines()
    assert len(actual) == len(expected), "\n".join(actual)
    for want, got in zip(expected, actual, strict=True):
        assert got.startswith(f"{config}:"), got
        assert want in got, f"expected {want!r}\n     got {got!r}"
