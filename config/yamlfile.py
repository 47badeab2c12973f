"""YAML documents that remember where every value came from, and errors that say so.

Every problem in a config or a profile is reported as ``file:line: path: message``; all problems of
a document are collected and raised together, so an operator fixes a file in one pass. Messages
never quote the offending value: it may be a secret written in the wrong place.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError, YAMLError, YAMLFutureWarning, YAMLWarning
from ruamel.yaml.nodes import MappingNode, SequenceNode
from ruamel.yaml.reader import ReaderError

Loc = tuple[str | int, ...]
ModelT = TypeVar("ModelT", bound=BaseModel)

MAX_DEPTH = 64  # far deeper than any real config; also stops recursive aliases
MAX_FLOW_DEPTH = 200  # unclosed [ and { counted naively, before parsing
MAX_VALUES = 100_000  # after alias expansion: a "billion laughs" document is refused, not expanded
_SCALAR_KEY = (str, int, float, bool, type(None))


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
        unique = dict.fromkeys(problems)  # two checks may find the same fault; say it once
        self.problems = sorted(unique, key=lambda p: (p.file, p.line, p.path))
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
    except UnicodeDecodeError as exc:
        raise ConfigError([Problem(file, 0, "", "not UTF-8 text")]) from exc
    return parse_yaml(text, file)


def parse_yaml(text: str, file: str) -> YamlDocument:
    """Parse YAML text named ``file`` (used by load_yaml and by tests)."""
    failure = _flow_depth_problem(text, file)
    nodes = None
    if failure is None:
        nodes, failure = _load_nodes(text, file)
    if failure is not None:
        # raised here, not in an except block, so ruamel's exception (its text quotes values, maybe
        # a secret) is not attached as __context__ for a traceback or a logger to print
        raise ConfigError([failure])
    plain = _Plain(file)
    data = plain.convert(nodes, 0)
    if plain.problems:
        raise ConfigError(plain.problems)
    return YamlDocument(file, nodes, data)


def _load_nodes(text: str, file: str) -> tuple[Any, Problem | None]:
    """The round-trip node tree, or the problem that stopped ruamel building it."""
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    with warnings.catch_warnings():
        # ruamel warns (a reused anchor, ...) with a snippet of the document, which may hold a secret
        warnings.simplefilter("ignore", YAMLWarning)
        warnings.simplefilter("ignore", YAMLFutureWarning)
        try:
            return yaml.load(text), None
        except YAMLError as exc:
            return None, _yaml_problem(exc, text, file)
        except RecursionError:
            return None, Problem(file, 0, "", f"invalid YAML: nested too deeply to parse (facwatch allows "
                                              f"{MAX_DEPTH} levels)")
        except Exception:  # bare ValueError, KeyError, TypeError... from ruamel's constructors
            return None, Problem(file, _unconstructable_line(text), "", "invalid YAML: a value cannot be read as "
                                 "its tag or type says (e.g. !!int abc, an impossible date, a list inside a ? key)")


def _unconstructable_line(text: str) -> int:
    """Line of the first node ruamel cannot construct (scalars first); 0 if none is found."""
    try:
        nodes = _composed_nodes(YAML(typ="rt").compose(text))
        constructor = YAML(typ="rt").constructor  # one, so nodes shared through aliases are built once
        for node in sorted(nodes, key=lambda n: (isinstance(n, MappingNode | SequenceNode), n.start_mark.index)):
            try:
                constructor.construct_object(node, deep=True)
            except Exception:
                return node.start_mark.line + 1
    except Exception:  # only a better line number was at stake: report line 0 rather than fail the check
        return 0
    return 0


def _composed_nodes(root: Any) -> list[Any]:
    """Every distinct node of a composed document (aliases make it a graph, possibly cyclic)."""
    seen: dict[int, Any] = {}
    stack = [root]
    while stack and len(seen) < MAX_VALUES:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen[id(node)] = node
        if isinstance(node, MappingNode):
            stack += [part for pair in node.value for part in pair]
        elif isinstance(node, SequenceNode):
            stack += node.value
    return list(seen.values())


def _flow_depth_problem(text: str, file: str) -> Problem | None:
    """Refuse absurd ``[``/``{`` nesting up front: ruamel's scanner is quadratic in it (seconds per KB)."""
    depth = 0
    for match in re.finditer(r"[\[\]{}]", text):  # quotes ignored: an over-count only matters past the limit
        depth = depth + 1 if match.group() in "[{" else max(0, depth - 1)
        if depth > MAX_FLOW_DEPTH:
            line = text.count("\n", 0, match.start()) + 1
            return Problem(file, line, "", f"invalid YAML: more than {MAX_FLOW_DEPTH} nested [ or {{")
    return None


def _yaml_problem(exc: YAMLError, text: str, file: str) -> Problem:
    """Locate a ruamel error; its text may quote values, so only the parts that never do are kept."""
    if isinstance(exc, DuplicateKeyError):
        return Problem(file, _mark_line(exc.problem_mark), "", _duplicate_key_message(exc))
    if isinstance(exc, MarkedYAMLError):
        line = _mark_line(exc.problem_mark or exc.context_mark)
        context = (exc.context or "").strip()
        if context and exc.context_mark is not None and _mark_line(exc.context_mark) != line:
            context += f" that starts at line {_mark_line(exc.context_mark)}"  # e.g. the unclosed `{`
        parts = [context, (exc.problem or "").strip()]
        return Problem(file, line, "", "invalid YAML: " + "; ".join(p for p in parts if p))
    if isinstance(exc, ReaderError):  # a character YAML does not allow; the text names only its code
        line = text.count("\n", 0, exc.position) + 1 if isinstance(exc.position, int) else 0
        return Problem(file, line, "", "invalid YAML: " + (str(exc).splitlines() or ["bad character"])[0])
    return Problem(file, 0, "", "invalid YAML")


def _mark_line(mark: Any) -> int:
    return mark.line + 1 if mark is not None else 0


def _duplicate_key_message(exc: DuplicateKeyError) -> str:
    # ruamel's text quotes both values, which may be secrets: keep only the key and the first line
    match = re.search(r'found duplicate key "(.*?)" with value', exc.problem or "", re.DOTALL)
    key = f" {match.group(1)!r}" if match else ""
    where = f" in the mapping that starts at line {_mark_line(exc.context_mark)}" if exc.context_mark else ""
    return f"duplicate key{key}{where}"


class _Plain:
    """Strips ruamel's subclasses so validation sees ordinary Python values, within size limits."""

    def __init__(self, file: str):
        self.file = file
        self.count = 0
        self.refused = False
        self.problems: list[Problem] = []

    def convert(self, node: Any, depth: int, line: int = 1) -> Any:
        """The plain value of ``node``; None (and a problem) where a limit is hit."""
        self.count += 1
        if depth > MAX_DEPTH or self.count > MAX_VALUES:
            self._refuse(line, depth)
            return None
        if isinstance(node, dict):
            return self._mapping(node, depth, line)
        if isinstance(node, list):
            return [self.convert(v, depth + 1, _item_line(node, i, line)) for i, v in enumerate(node)]
        if isinstance(node, bool) or node is None:
            return node
        for plain in (int, float, str):
            if isinstance(node, plain):
                return plain(node)
        return node

    def _mapping(self, node: dict, depth: int, line: int) -> dict:
        result = {}
        for key, value in node.items():
            key_line = _key_line(node, key, line)
            if not isinstance(key, _SCALAR_KEY):
                self.problems.append(Problem(self.file, key_line, "", "keys must be plain strings or numbers"))
                continue
            result[self.convert(key, depth + 1, key_line)] = self.convert(value, depth + 1, key_line)
        return result

    def _refuse(self, line: int, depth: int) -> None:
        if self.refused:
            return  # one such problem is enough; the rest are the same alias expanded again
        self.refused = True
        if depth > MAX_DEPTH:
            message = f"document nested more than {MAX_DEPTH} levels deep (a recursive alias?)"
        else:
            message = f"document has more than {MAX_VALUES} values once aliases are expanded"
        self.problems.append(Problem(self.file, line, "", message))


def _key_line(node: Any, key: Any, default: int) -> int:
    try:
        return node.lc.key(key)[0] + 1
    except (AttributeError, KeyError, TypeError, IndexError):
        return default  # merged (<<) keys and plain dicts carry no position of their own


def _item_line(node: Any, index: int, default: int) -> int:
    try:
        return node.lc.item(index)[0] + 1
    except (AttributeError, KeyError, TypeError, IndexError):
        return default


def to_plain(node: Any) -> Any:
    """Strip ruamel's subclasses so validation sees ordinary Python values."""
    return _Plain("").convert(node, 0)


def line_of(nodes: Any, loc: Iterable[str | int]) -> int:
    """1-based line of the deepest node on ``loc`` that exists (its parent's line if it is missing)."""
    line = 1
    current = nodes
    for part in loc:
        if isinstance(current, CommentedMap) and part in current:
            line = _key_line(current, part, line)
            current = current[part]
        elif isinstance(current, CommentedSeq) and isinstance(part, int) and 0 <= part < len(current):
            line = _item_line(current, part, line)
            current = current[part]
    return line


def format_loc(loc: Iterable[str | int]) -> str:
    """``("devices", 2, "port")`` → ``devices[2].port``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def validate(model: type[ModelT], doc: YamlDocument, extra: Sequence[Problem] = ()) -> ModelT:
    """Validate a document against a pydantic model; every error (plus ``extra``) in one ConfigError."""
    result, problems = check(model, doc)
    if problems or extra or result is None:
        raise ConfigError([*extra, *problems])
    return result


def check(model: type[ModelT], doc: YamlDocument) -> tuple[ModelT | None, list[Problem]]:
    """Validate a document against a pydantic model: the result, or None and every problem."""
    try:
        return model.model_validate(doc.data), []
    except ValidationError as exc:
        return None, [_problem(doc, err) for err in exc.errors()]


def _problem(doc: YamlDocument, err: Any) -> Problem:
    if doc.data is None and not err["loc"]:
        return doc.problem((), "the document is empty")
    loc = _data_loc(doc.data, err["loc"])
    if err.get("type") in ("union_tag_invalid", "union_tag_not_found"):
        loc = (*loc, str(err["ctx"]["discriminator"]).strip("'"))  # point at the `type:` line itself
    return doc.problem(loc, _message(err))


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
        elif not (isinstance(current, dict) and part == loc[-1] and part != "[key]"):
            continue  # a union tag or pydantic's "[key]" marker: not a place in the document
        kept.append(part)
    return tuple(kept)


def _has_child(current: Any, part: str | int) -> bool:
    if isinstance(current, list):
        return isinstance(part, int) and 0 <= part < len(current)
    return isinstance(current, dict) and part in current


# Pydantic's wording names Python types ("valid dictionary or instance of Room"); an operator
# edits YAML, so say it in YAML's terms. Inputs are never echoed (see the module docstring).
_MESSAGES = {
    "extra_forbidden": "unknown key",
    "missing": "required key is missing",
    "model_type": "must be a mapping (key: value lines)",
    "model_attributes_type": "must be a mapping (key: value lines)",
    "dict_type": "must be a mapping (key: value lines)",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
    "set_type": "must be a list",
    "string_type": "must be a string",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number (not NaN or infinity)",
    "literal_error": "must be one of {expected}",
    "enum": "must be one of {expected}",
    "union_tag_not_found": "required key is missing",
    "greater_than": "must be more than {gt}",
    "greater_than_equal": "must be at least {ge}",
    "less_than": "must be less than {lt}",
    "less_than_equal": "must be at most {le}",
    "string_too_long": "must be at most {max_length} characters",
    "too_long": "must have at most {max_length} items",
    "string_pattern_mismatch": "does not match {pattern}",
}


def _message(err: Any) -> str:
    kind = err.get("type", "")
    ctx = err.get("ctx") or {}
    if err["loc"] and err["loc"][-1] == "[key]":
        return "keys here must be strings"
    if kind in ("string_too_short", "too_short"):
        wanted = ctx.get("min_length", 1)
        unit = "characters" if kind == "string_too_short" else "items"
        return "must not be empty" if wanted == 1 else f"must have at least {wanted} {unit}"
    if kind == "union_tag_invalid":
        return f"unknown type; must be one of {ctx.get('expected_tags', '')}"
    if kind in _MESSAGES:
        try:
            return _MESSAGES[kind].format(**ctx)
        except (KeyError, IndexError, ValueError):
            return _MESSAGES[kind].split(" {")[0]
    return str(err.get("msg", "invalid")).removeprefix("Value error, ")
