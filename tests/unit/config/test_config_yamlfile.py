"""YAML parsing: every failure is a located ConfigError, hostile documents are refused cheaply."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from config.yamlfile import MAX_DEPTH, ConfigError, Problem, format_loc, line_of, load_yaml, parse_yaml

BILLION_LAUGHS = "\n".join(
    ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    + [f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]" for i in range(8)]
)


def problems_of(text: str) -> list[Problem]:
    with pytest.raises(ConfigError) as caught:
        parse_yaml(text, "x.yaml")
    return caught.value.problems


def test_billion_laughs_is_refused_quickly() -> None:
    started = time.monotonic()
    problems = problems_of(BILLION_LAUGHS)

    assert time.monotonic() - started < 5
    assert [p.message for p in problems] == ["document has more than 100000 values once aliases are expanded"]


def test_deep_nesting_is_refused_with_a_line() -> None:
    text = "a:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(MAX_DEPTH + 5)) + "  " * 80 + "v: 1\n"

    (problem,) = problems_of(text)

    assert problem.message.startswith(f"document nested more than {MAX_DEPTH} levels deep")
    assert problem.line > MAX_DEPTH


def test_nesting_too_deep_for_the_parser_is_a_config_error() -> None:
    text = "".join(" " * i + "a:\n" for i in range(1000)) + " " * 1000 + "1\n"  # beyond Python's stack

    (problem,) = problems_of(text)

    assert problem.message == f"invalid YAML: nested too deeply to parse (facwatch allows {MAX_DEPTH} levels)"


def test_absurd_flow_nesting_is_refused_before_parsing() -> None:
    started = time.monotonic()
    (problem,) = problems_of("a: 1\nb: " + "[" * 5000 + "]" * 5000)

    assert time.monotonic() - started < 1
    assert (problem.line, problem.message) == (2, "invalid YAML: more than 200 nested [ or {")


@pytest.mark.parametrize("text", ["? [a, b]\n: 1\n", "ok: 1\n? {a: 1}\n: 1\n"])
def test_complex_mapping_key_is_refused(text: str) -> None:
    (problem,) = problems_of(text)

    assert problem.message == "keys must be plain strings or numbers"
    assert problem.line == text.count("\n", 0, text.index("?")) + 1


def test_forbidden_character_is_located() -> None:
    (problem,) = problems_of("a: 1\nb: \x01\n")

    assert problem.line == 2
    assert problem.message.startswith("invalid YAML: unacceptable character")


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("x: 1\ny:\n  when: 2024-02-30\n", 3),  # an impossible date
        ("a: 1\nb: !!bool maybe\n", 2),
        ("a: !!int 0x\n", 1),
        ("x: 1\n? {a: [1]}\n: 1\n", 1),  # unhashable key: blamed on the mapping holding it
        (BILLION_LAUGHS + "\nz: 2024-02-30\n", 10),  # locating it must not expand the aliases
        ("a: &x [*x, 2024-02-30]\n", 1),  # nor loop on a recursive one
    ],
)
def test_value_ruamel_cannot_construct_is_a_located_config_error(text: str, line: int) -> None:
    (problem,) = problems_of(text)

    assert problem.line == line
    assert problem.message.startswith("invalid YAML: a value cannot be read as its tag or type says")


def test_ruamel_warnings_are_not_printed(recwarn: pytest.WarningsRecorder) -> None:
    doc = parse_yaml("&a x: secret-looking\n&a y: 2\n", "x.yaml")  # a reused anchor: ruamel warns with a snippet

    assert doc.data == {"x": "secret-looking", "y": 2}
    assert not recwarn.list


def test_merge_keys_parse_and_locate_on_the_parent() -> None:
    doc = parse_yaml("base: &b {id: x}\nother:\n  <<: *b\n  name: y\n", "x.yaml")

    assert doc.data["other"] == {"id": "x", "name": "y"}
    assert line_of(doc.nodes, ("other", "id")) == 2  # merged keys have no line of their own
    assert line_of(doc.nodes, ("other", "name")) == 4


def test_missing_file_and_non_utf8_file_are_config_errors(tmp_path: Path) -> None:
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes("name: caf\xe9\n".encode("latin-1"))

    with pytest.raises(ConfigError, match="cannot read: No such file"):
        load_yaml(tmp_path / "absent.yaml")
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        load_yaml(latin1)


def test_config_error_sorts_by_line_and_says_each_problem_once() -> None:
    later, earlier = Problem("f", 9, "b", "late"), Problem("f", 2, "a", "early")

    error = ConfigError([later, earlier, later])

    assert str(error).splitlines() == ["f:2: a: early", "f:9: b: late"]


def test_format_loc_reads_like_the_yaml() -> None:
    assert format_loc(("devices", 2, "snmp", "version")) == "devices[2].snmp.version"
    assert format_loc(()) == ""
