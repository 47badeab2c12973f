"""YAML documents that remember where every value came from, and errors that say so.

Every problem in a config or a profile is reported as ``file:line: path: message``; all problems of
a document are collected and raised together, so an operator fixes a file in one pass.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

Loc = tuple[str | int, ...]
ModelT = TypeVar("ModelT", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with one document, located by line and by path inside it."""

    file: str
    line: int
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.path or '(document)'}: {self.message}"


class ConfigError(Exception):
    """A config or profile that must not be used; carries every problem found."""

    def __init__(self, problems: Sequence[Problem]):
        self.problems = sorted(problems, key=lambda p: (p.file, p.line, p.path))
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass(frozen=True, slots=True)
class YamlDocument:
    """A parsed YAML file: plain Python data for validation plus the node tree for line numbers."""

    file: str
    nodes: Any  # ruamel round-trip tree (CommentedMap/CommentedSeq), carries .lc positions
    data: Any  # the same content as plain dict/list/str/int/float/bool/None

    def problem(self, loc: Loc, message: str) -> Problem:
        """A Problem located at ``loc`` (keys and list indexes) inside this document."""
        return Problem(self.file, line_of(self.nodes, loc), format_loc(loc), message)


def load_yaml(path: str | Path) -> YamlDocument:
    """Parse a YAML file, refusing duplicate keys; syntax errors become a ConfigError."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([Problem(file, 0, "", f"cannot read: {exc.strerror}")]) from exc
    return parse_yaml(text, file)


def parse_yaml(text: str, file: str) -> YamlDocument:
    """Parse YAML text named ``file`` (used by load_yaml and by tests)."""
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    try:
        nodes = yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 0
        raise ConfigError([Problem(file, line, "", _yaml_message(exc))]) from exc
    return YamlDocument(file, nodes, to_plain(nodes))


def _yaml_message(exc: MarkedYAMLError) -> str:
    parts = [exc.context or "", exc.problem or ""]
    return "invalid YAML: " + "; ".join(p.strip() for p in parts if p and p.strip())


def to_plain(node: Any) -> Any:
    """Strip ruamel's subclasses so validation sees ordinary Python values."""
    if isinstance(node, dict):
        return {to_plain(k): to_plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [to_plain(v) for v in node]
    if isinstance(node, bool) or node is None:
        return node
    for plain in (int, float, str):
        if isinstance(node, plain):
            return plain(node)
    return node


def line_of(nodes: Any, loc: Iterable[str | int]) -> int:
    """1-based line of the deepest node on ``loc`` that exists (its parent's line if it is missing)."""
    line = 1
    current = nodes
    for part in loc:
        if isinstance(current, CommentedMap) and part in current:
            line = current.lc.key(part)[0] + 1
            current = current[part]
        elif isinstance(current, CommentedSeq) and isinstance(part, int) and 0 <= part < len(current):
            line = current.lc.item(part)[0] + 1
            current = current[part]
        elif isinstance(current, CommentedMap | CommentedSeq):
            continue  # a pydantic union tag or a missing key: stay on the parent
    return line


def format_loc(loc: Iterable[str | int]) -> str:
    """``("devices", 2, "port")`` → ``devices[2].port``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def validate(model: type[ModelT], doc: YamlDocument, extra: Sequence[Problem] = ()) -> ModelT:
    """Validate a document against a pydantic model; every error (plus ``extra``) in one ConfigError."""
    try:
        result = model.model_validate(doc.data)
    except ValidationError as exc:
        problems = [doc.problem(_data_loc(doc.data, err["loc"]), _message(err)) for err in exc.errors()]
        raise ConfigError([*extra, *problems]) from exc
    if extra:
        raise ConfigError(extra)
    return result


def _data_loc(data: Any, loc: Sequence[str | int]) -> Loc:
    """Drop pydantic's union-member tags from a loc, keeping only real keys and indexes."""
    kept: list[str | int] = []
    current = data
    for part in loc:
        if _has_child(current, part):
            current = current[part]
        elif isinstance(current, dict) and isinstance(part, str) and part.isdigit() and int(part) in current:
            part = int(part)  # pydantic stringifies int mapping keys
            current = current[part]
        elif not (isinstance(current, dict) and _is_missing_field(loc, part)):
            continue
        kept.append(part)
    return tuple(kept)


def _has_child(current: Any, part: str | int) -> bool:
    if isinstance(current, list):
        return isinstance(part, int) and 0 <= part < len(current)
    return isinstance(current, dict) and part in current


def _is_missing_field(loc: Sequence[str | int], part: str | int) -> bool:
    return part == loc[-1]


def _message(err: dict[str, Any]) -> str:
    kind = err.get("type", "")
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    message = str(err.get("msg", "invalid"))
    return message.removeprefix("Value error, ")
