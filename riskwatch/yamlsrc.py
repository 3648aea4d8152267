"""A YAML layer that never surprises: every value keeps its text and its position.

Parsing (:func:`parse`) uses PyYAML's scanner, parser and composer with a resolver
that resolves *no* implicit type, so every scalar stays the exact string that was
written, with its file, 1-based line and column. ``on`` is the string ``"on"``,
``1:30`` the string ``"1:30"``, ``010`` the string ``"010"``; only the typed
converters below decide what a string means, and they refuse the YAML 1.1 traps with
a hint (docs/design.md#libraries, "YAML and config validation").

YAML features, decided once:

- duplicate keys in a mapping are a problem, reported at the second key with the
  line and column of the first;
- anchors and aliases are allowed (an alias reports the anchor's position); a
  recursive alias, or a document whose alias expansion exceeds ``MAX_NODES`` nodes
  ("billion laughs"), is a problem;
- merge keys (``<<: *base``) are rejected: repeat the keys, or alias a whole value;
- explicit tags other than ``!!str``, ``!!seq`` and ``!!map`` are rejected;
- keys must be scalars; a document must be a single document.

Reading (:class:`Reader`) collects :class:`~riskwatch.errors.Problem` s instead of
stopping at the first one. Every converter takes a node (or ``None`` for "absent")
and a ``default``; it returns the default when the node is absent, and also, after
recording a problem, when the value is invalid, so a loader can keep going and report
everything in one pass. Typical use::

    problems = Problems()
    root = parse(text, "riskwatch.yaml", problems)
    r = Reader(problems)
    f = r.mapping(root, required={"name"}, optional={"for", "when"})
    name = r.as_str(f.get("name"))                       # str | None
    hold = r.as_duration(f.get("for"), Duration(0))      # Duration
    when = f.get("when")
    if isinstance(when, Scalar):
        r.problem_in(when, 7, "unknown name 'margn'")    # column inside the string
    if problems:
        raise ConfigError(problems.sorted())

Messages never echo the value of a string that may be a secret: only converters
whose values are not secret (numbers, booleans, durations, enums, times, zones)
quote what they refuse.
"""

from __future__ import annotations

import difflib
import re
import zoneinfo
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import time
from typing import TypeVar, overload

import yaml
import yaml.composer
import yaml.nodes
import yaml.parser
import yaml.reader
import yaml.resolver
import yaml.scanner

from riskwatch.durations import Duration, parse_duration
from riskwatch.errors import Problem

__all__ = [
    "MAX_NODES",
    "Fields",
    "Map",
    "Node",
    "Problem",
    "Problems",
    "Reader",
    "Scalar",
    "Seq",
    "SourcePos",
    "did_you_mean",
    "expand_env",
    "parse",
]

MAX_NODES = 200_000
"""Upper bound on the number of nodes of a document once aliases are expanded."""

_T = TypeVar("_T")
_D = TypeVar("_D")

_YAML_TAG = "tag:yaml.org,2002:"
_STR_TAG = _YAML_TAG + "str"
_SEQ_TAG = _YAML_TAG + "seq"
_MAP_TAG = _YAML_TAG + "map"
_NULLS = frozenset({"", "~", "null", "Null", "NULL"})


# --------------------------------------------------------------------------- nodes


@dataclass(frozen=True, slots=True)
class SourcePos:
    """A position in a file: 1-based ``line`` and ``col`` (in characters), 0-based ``index``."""

    file: str
    line: int
    col: int
    index: int

    def problem(self, message: str) -> Problem:
        """A ``Problem`` at this position."""
        return Problem(self.file, self.line, self.col, message)


@dataclass(frozen=True, slots=True, eq=False)
class Node(ABC):
    """A composed YAML node; ``start`` is its first character, ``end`` just past its last."""

    start: SourcePos
    end: SourcePos

    @property
    @abstractmethod
    def kind(self) -> str:
        """``"a string"``, ``"a list"``, ``"a mapping"`` or ``"null"``, for messages."""


@dataclass(frozen=True, slots=True, eq=False)
class Scalar(Node):
    """A scalar, always a string: ``value`` is the parsed text, before any ``${VAR}``.

    ``style`` is how it was written: ``""`` plain, ``"'"`` single-quoted, ``'"'``
    double-quoted, ``"|"`` literal block, ``">"`` folded block.
    """

    value: str
    style: str
    _source: str = field(repr=False, compare=False)
    _offsets: list[int] = field(default_factory=list, repr=False, compare=False)

    @property
    def kind(self) -> str:
        return "null" if self.is_null else "a string"

    @property
    def is_null(self) -> bool:
        """True for a plain ``null``, ``~``, ``Null``, ``NULL`` or an empty plain value."""
        return self.style == "" and self.value in _NULLS

    def position_at(self, offset: int) -> SourcePos:
        """The file position of character ``offset`` of ``value``.

        Exact for plain, single- and double-quoted scalars on one line (escapes such as
        ``''`` and ``\\x41`` included) and for block scalars; for multi-line flow
        scalars, folded line breaks map to the break in the source. ``offset ==
        len(value)`` maps just past the last character; offsets are clamped to that.
        """
        offsets = self._raw_offsets()
        raw = offsets[max(0, min(offset, len(offsets) - 1))]
        return self._mark_at(raw)

    def _raw_offsets(self) -> list[int]:
        if not self._offsets:
            raw = self._source[self.start.index : self.end.index]
            self._offsets.extend(_align(raw, self.value, self.style))
        return self._offsets

    def _mark_at(self, raw_offset: int) -> SourcePos:
        raw = self._source[self.start.index : self.start.index + raw_offset]
        breaks = raw.count("\n")
        if breaks == 0:
            col = self.start.col + raw_offset
        else:
            col = raw_offset - raw.rfind("\n")
        return SourcePos(
            self.start.file, self.start.line + breaks, col, self.start.index + raw_offset
        )


@dataclass(frozen=True, slots=True, eq=False)
class Seq(Node):
    """A sequence (YAML list)."""

    items: tuple[Node, ...]

    @property
    def kind(self) -> str:
        return "a list"


@dataclass(frozen=True, slots=True, eq=False)
class Map(Node):
    """A mapping, in source order, without duplicate keys (duplicates are problems)."""

    pairs: tuple[tuple[Scalar, Node], ...]

    @property
    def kind(self) -> str:
        return "a mapping"


def _align(raw: str, value: str, style: str) -> list[int]:
    """Map each character of a scalar's parsed ``value`` to an offset in its ``raw`` text.

    Returns ``len(value) + 1`` offsets (the last one is just past the scalar). Parsed
    characters appear in the source in order; only whitespace (line folding,
    indentation) and escapes differ, so a greedy walk aligns them.
    """
    if style in ("'", '"'):
        p = 1
    elif style in ("|", ">"):
        newline = raw.find("\n")
        p = newline + 1 if newline >= 0 else len(raw)
    else:
        p = 0
    out: list[int] = []
    n = len(raw)
    for c in value:
        if c in " \t\n":
            if style == '"' and p < n and raw[p] == "\\" and p + 1 < n and raw[p + 1] not in "\r\n":
                out.append(p)
                p += _escape_length(raw, p)
                continue
            out.append(p)
            if p < n and raw[p] in " \t\r\n":
                p += 2 if raw.startswith("\r\n", p) else 1
            continue
        while True:
            while p < n and raw[p] != c and raw[p] in " \t\r\n":
                p += 1
            if style == '"' and p + 1 < n and raw[p] == "\\" and raw[p + 1] in "\r\n":
                p += 2  # escaped line break: produces nothing, swallows what follows
                continue
            break
        out.append(min(p, n))
        if style == '"' and p < n and raw[p] == "\\":
            p += _escape_length(raw, p)
        elif style == "'" and c == "'" and raw.startswith("''", p):
            p += 2
        else:
            p += 1
    out.append(min(p, n))
    return out


def _escape_length(raw: str, p: int) -> int:
    """Length of the double-quoted escape sequence starting at ``raw[p] == '\\\\'``."""
    kind = raw[p + 1] if p + 1 < len(raw) else ""
    return 2 + {"x": 2, "u": 4, "U": 8}.get(kind, 0)


# --------------------------------------------------------------------------- parsing


class Problems:
    """An ordered collection of problems; falsy while empty."""

    def __init__(self) -> None:
        self._items: list[Problem] = []

    def add(self, at: Node | SourcePos, message: str) -> None:
        """Record ``message`` at a node's start or at a mark."""
        mark = at.start if isinstance(at, Node) else at
        self._items.append(mark.problem(message))

    def add_problem(self, problem: Problem) -> None:
        """Record an already built problem (e.g. one without a position)."""
        self._items.append(problem)

    def sorted(self) -> list[Problem]:
        """Problems by file (in order of first appearance), then line and column."""
        order: dict[str, int] = {}
        for p in self._items:
            order.setdefault(p.file, len(order))
        return sorted(self._items, key=lambda p: (order[p.file], p.line, p.col))

    def __iter__(self) -> Iterator[Problem]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)


class _Composer(
    yaml.reader.Reader,
    yaml.scanner.Scanner,
    yaml.parser.Parser,
    yaml.composer.Composer,
    yaml.resolver.BaseResolver,
):
    """PyYAML's composer with a resolver that knows no implicit type (all scalars str)."""

    def __init__(self, stream: str) -> None:
        yaml.reader.Reader.__init__(self, stream)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)
        yaml.composer.Composer.__init__(self)
        yaml.resolver.BaseResolver.__init__(self)


def parse(text: str, file: str, problems: Problems) -> Node | None:
    """Compose ``text`` (the content of ``file``) into a node tree.

    Returns ``None`` when the document is empty or cannot be parsed; a syntax error is
    recorded at the YAML error's position, as are duplicate keys, merge keys,
    unsupported tags and alias abuse (the tree is then still returned, minus the
    offending entries). ``file`` is only used in positions.
    """
    loader: _Composer | None = None
    try:
        loader = _Composer(text)
        raw = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        problems.add_problem(_syntax_problem(exc, file))
        return None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        col = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        problems.add_problem(
            Problem(file, line, col, f"invalid yaml: unacceptable character #x{exc.character:04x}")
            if isinstance(exc.character, int)
            else Problem(file, line, col, "invalid yaml: unacceptable character")
        )
        return None
    except RecursionError:
        problems.add_problem(Problem(file, 0, 0, "invalid yaml: document nested too deeply"))
        return None
    finally:
        if loader is not None:
            loader.dispose()
    if raw is None:
        return None
    return _Converter(text, file, problems).convert(raw)


def _syntax_problem(exc: yaml.MarkedYAMLError, file: str) -> Problem:
    mark = exc.problem_mark or exc.context_mark
    message = "invalid yaml: " + (exc.problem or "syntax error")
    if exc.context and not exc.context.startswith("while "):
        message = f"invalid yaml: {exc.context}, {exc.problem or 'syntax error'}"
    elif exc.context and exc.context_mark is not None and exc.context_mark is not mark:
        ctx = exc.context.removeprefix("while ").replace("parsing ", "in ", 1)
        message += f" ({ctx} started at {exc.context_mark.line + 1}:{exc.context_mark.column + 1})"
    if mark is None:
        return Problem(file, 0, 0, message)
    return Problem(file, mark.line + 1, mark.column + 1, message)


class _Converter:
    """PyYAML nodes -> riskwatch nodes, checking duplicates, tags, merges and aliases."""

    def __init__(self, text: str, file: str, problems: Problems) -> None:
        self.text = text
        self.file = file
        self.problems = problems
        self.done: dict[int, Node] = {}
        self.sizes: dict[int, int] = {}
        self.active: set[int] = set()
        self.too_big = False

    def mark(self, m: yaml.Mark) -> SourcePos:
        return SourcePos(self.file, m.line + 1, m.column + 1, m.index)

    def convert(self, node: yaml.nodes.Node) -> Node | None:
        try:
            return self._convert(node)
        except RecursionError:
            self.problems.add(self.mark(node.start_mark), "yaml document nested too deeply")
            return None

    def _convert(self, node: yaml.nodes.Node) -> Node | None:
        key = id(node)
        if key in self.done:
            return self.done[key]
        start, end = self.mark(node.start_mark), self.mark(node.end_mark)
        if key in self.active:
            self.problems.add(start, "recursive alias")
            return None
        self._check_tag(node, start)
        self.active.add(key)
        out: Node
        size = 1
        if isinstance(node, yaml.ScalarNode):
            style = node.style or ""
            out = Scalar(start, end, value=node.value, style=style, _source=self.text)
        elif isinstance(node, yaml.SequenceNode):
            items: list[Node] = []
            for item in node.value:
                converted = self._convert(item)
                if converted is not None:
                    items.append(converted)
                    size += self.sizes.get(id(item), 1)
            out = Seq(start, end, items=tuple(items))
        else:
            assert isinstance(node, yaml.MappingNode)  # noqa: S101 - composer yields only these
            out, size = self._mapping(node, start, end)
        self.active.discard(key)
        self.sizes[key] = size
        if size > MAX_NODES and not self.too_big:
            self.too_big = True
            self.problems.add(
                start, f"document too large after alias expansion (over {MAX_NODES} nodes)"
            )
        self.done[key] = out
        return out

    def _mapping(self, node: yaml.MappingNode, start: SourcePos, end: SourcePos) -> tuple[Map, int]:
        pairs: list[tuple[Scalar, Node]] = []
        seen: dict[str, Scalar] = {}
        size = 1
        for k, v in node.value:
            if not isinstance(k, yaml.ScalarNode):
                self.problems.add(self.mark(k.start_mark), "mapping keys must be plain strings")
                continue
            kn = self._convert(k)
            if not isinstance(kn, Scalar):
                continue
            if kn.value == "<<" and kn.style == "":
                self.problems.add(
                    kn,
                    "merge keys ('<<') are not supported; repeat the keys or alias the whole value",
                )
                continue
            first = seen.get(kn.value)
            if first is not None:
                self.problems.add(
                    kn,
                    f"duplicate key '{kn.value}' (first defined at "
                    f"{first.start.line}:{first.start.col})",
                )
                continue
            seen[kn.value] = kn
            vn = self._convert(v)
            if vn is None:
                continue
            pairs.append((kn, vn))
            size += 1 + self.sizes.get(id(v), 1)
        return Map(start, end, pairs=tuple(pairs)), size

    def _check_tag(self, node: yaml.nodes.Node, start: SourcePos) -> None:
        tag = node.tag
        if tag in (_STR_TAG, _SEQ_TAG, _MAP_TAG):
            expected = {
                yaml.ScalarNode: _STR_TAG,
                yaml.SequenceNode: _SEQ_TAG,
                yaml.MappingNode: _MAP_TAG,
            }[type(node)]
            if tag == expected:
                return
        shown = "!!" + tag.removeprefix(_YAML_TAG) if tag.startswith(_YAML_TAG) else tag
        self.problems.add(start, f"unsupported tag '{shown}'")


# --------------------------------------------------------------------------- values


_ENV_RE = re.compile(r"\$(\$|\{([^}]*)\}|\{)")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def expand_env(text: str, environ: Mapping[str, str]) -> tuple[str, list[tuple[int, str]]]:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in ``text`` from ``environ``.

    ``$$`` is a literal ``$``; any other ``$`` is kept as is. ``:-`` uses the default
    when the variable is unset or empty; the result is not expanded again. Returns the
    expanded text and a list of ``(offset in text, message)`` problems: an unset
    variable without a default, or a malformed reference. Messages name variables,
    never their values.
    """
    out: list[str] = []
    errors: list[tuple[int, str]] = []
    pos = 0
    for m in _ENV_RE.finditer(text):
        out.append(text[pos : m.start()])
        pos = m.end()
        if m.group(1) == "$":
            out.append("$")
            continue
        body = m.group(2)
        if body is None:
            errors.append((m.start(), "unterminated variable reference '${'"))
            continue
        name, sep, default = body.partition(":-")
        if not _ENV_NAME.fullmatch(name):
            errors.append((m.start(), f"invalid variable reference '${{{body}}}'"))
            continue
        value = environ.get(name)
        if sep and not value:
            out.append(default)
        elif value is None:
            errors.append((m.start(), f"environment variable {name} is not set"))
        else:
            out.append(value)
    out.append(text[pos:])
    return "".join(out), errors


def did_you_mean(word: str, choices: Collection[str]) -> str:
    """`` (did you mean 'x'?)`` when a choice is close to ``word``, else ``""``."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.7)
    return f" (did you mean '{close[0]}'?)" if close else ""


# --------------------------------------------------------------------------- reading


class Fields:
    """The known keys of a mapping checked by :meth:`Reader.mapping`."""

    def __init__(self, node: Map | None, entries: Mapping[str, tuple[Scalar, Node]]) -> None:
        self.node = node
        self._entries = dict(entries)

    def get(self, key: str) -> Node | None:
        """The value of ``key``; ``None`` when absent or null (so defaults apply)."""
        entry = self._entries.get(key)
        if entry is None or (isinstance(entry[1], Scalar) and entry[1].is_null):
            return None
        return entry[1]

    def key(self, key: str) -> Scalar | None:
        """The key node itself, for positions; ``None`` when absent."""
        entry = self._entries.get(key)
        return None if entry is None else entry[0]

    def __contains__(self, key: object) -> bool:
        """True when ``key`` is present with a non-null value."""
        return isinstance(key, str) and self.get(key) is not None

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)


class Reader:
    """Typed, positioned conversion of nodes, collecting problems into ``problems``.

    With ``environ``, every scalar read through a converter first has ``${VAR}`` and
    ``${VAR:-default}`` expanded (:func:`expand_env`); problems from expansion point
    at the ``$``. Without it, values are taken literally.
    """

    def __init__(self, problems: Problems, *, environ: Mapping[str, str] | None = None) -> None:
        self.problems = problems
        self.environ = environ
        self._expanded: dict[int, tuple[Scalar, str | None]] = {}

    # -- problems

    def problem(self, at: Node | SourcePos, message: str) -> None:
        """Record a problem at a node's start or at a mark."""
        self.problems.add(at, message)

    def problem_in(self, scalar: Scalar, offset: int, message: str) -> None:
        """Record a problem at character ``offset`` of the scalar's (unexpanded) value."""
        self.problems.add(scalar.position_at(offset), message)

    # -- structure

    def mapping(
        self,
        node: Node | None,
        *,
        required: Collection[str] = (),
        optional: Collection[str] = (),
    ) -> Fields:
        """Check that ``node`` is a mapping with only the given keys; return its fields.

        Reports unknown keys (with a did-you-mean), missing required keys (at the
        mapping) and required keys with a null value (at the key). ``None`` (an absent
        section) gives empty fields without a problem. A non-mapping is a problem and
        gives empty fields too.
        """
        if node is None:
            return Fields(None, {})
        if not isinstance(node, Map):
            self.problem(node, f"expected a mapping, found {node.kind}")
            return Fields(None, {})
        allowed = set(required) | set(optional)
        entries: dict[str, tuple[Scalar, Node]] = {}
        for k, v in node.pairs:
            if k.value not in allowed:
                self.problem(k, f"unknown key '{k.value}'{did_you_mean(k.value, allowed)}")
                continue
            entries[k.value] = (k, v)
        fields = Fields(node, entries)
        for name in sorted(required):
            if name not in entries:
                self.problem(node, f"missing required key '{name}'")
            elif name not in fields:
                self.problem(entries[name][0], f"missing value for required key '{name}'")
        return fields

    def as_list(self, node: Node | None) -> tuple[Node, ...]:
        """The items of a list; ``()`` when absent, or after a problem if not a list."""
        if node is None:
            return ()
        if not isinstance(node, Seq):
            self.problem(node, f"expected a list, found {node.kind}")
            return ()
        return node.items

    def as_str_list(self, node: Node | None, *, allow_empty: bool = False) -> list[str]:
        """A list of strings (invalid items are problems and are left out)."""
        out: list[str] = []
        for item in self.as_list(node):
            value = self.as_str(item, allow_empty=allow_empty)
            if value is not None:
                out.append(value)
        return out

    def as_str_map(self, node: Node | None) -> dict[str, str]:
        """A mapping of string keys to string values, any keys allowed."""
        if node is None:
            return {}
        if not isinstance(node, Map):
            self.problem(node, f"expected a mapping, found {node.kind}")
            return {}
        out: dict[str, str] = {}
        for k, v in node.pairs:
            value = self.as_str(v, allow_empty=True)
            if value is not None:
                out[k.value] = value
        return out

    # -- scalars

    def text(self, node: Node) -> str | None:
        """The (expanded) text of a non-null scalar, or ``None`` after a problem."""
        if not isinstance(node, Scalar) or node.is_null:
            self.problem(node, f"expected a value, found {node.kind}")
            return None
        return self._expand(node)

    def _expand(self, node: Scalar) -> str | None:
        if self.environ is None:
            return node.value
        # Keyed by id() but holding the node itself: a cached id can never be reused by
        # another node while its entry exists (and the identity check makes sure).
        cached = self._expanded.get(id(node))
        if cached is not None and cached[0] is node:
            return cached[1]
        value, errors = expand_env(node.value, self.environ)
        for offset, message in errors:
            self.problem_in(node, offset, message)
        result = None if errors else value
        self._expanded[id(node)] = (node, result)
        return result

    def _scalar(self, node: Node, what: str) -> str | None:
        if not isinstance(node, Scalar) or node.is_null:
            self.problem(node, f"expected {what}, found {node.kind}")
            return None
        return self._expand(node)

    def _convert(
        self, node: Node | None, default: _D, what: str, conv: Callable[[str], _T]
    ) -> _T | _D:
        if node is None:
            return default
        text = self._scalar(node, what)
        if text is None:
            return default
        try:
            return conv(text)
        except ValueError as exc:
            self.problem(node, str(exc))
            return default

    @overload
    def as_str(self, node: Node | None, default: str, *, allow_empty: bool = ...) -> str: ...
    @overload
    def as_str(
        self, node: Node | None, default: None = None, *, allow_empty: bool = ...
    ) -> str | None: ...
    def as_str(
        self, node: Node | None, default: str | None = None, *, allow_empty: bool = False
    ) -> str | None:
        """A string; an empty one is a problem unless ``allow_empty``. Never quotes the value."""

        def conv(text: str) -> str:
            if not text and not allow_empty:
                msg = "expected a non-empty string"
                raise ValueError(msg)
            return text

        return self._convert(node, default, "a string", conv)

    @overload
    def as_int(
        self,
        node: Node | None,
        default: int,
        *,
        minimum: int | None = ...,
        maximum: int | None = ...,
    ) -> int: ...
    @overload
    def as_int(
        self,
        node: Node | None,
        default: None = None,
        *,
        minimum: int | None = ...,
        maximum: int | None = ...,
    ) -> int | None: ...
    def as_int(
        self,
        node: Node | None,
        default: int | None = None,
        *,
        minimum: int | None = None,
        maximum: int | None = None,
    ) -> int | None:
        """A decimal integer in ``[minimum, maximum]``; ``0x10``, ``1_000``, ``010`` are refused."""

        def conv(text: str) -> int:
            if not re.fullmatch(r"[-+]?\d+", text):
                msg = f"expected an integer, found '{text}'"
                raise ValueError(msg)
            if re.fullmatch(r"[-+]?0\d+", text):
                msg = f"ambiguous integer '{text}': remove the leading zero"
                raise ValueError(msg)
            return _bounded(int(text), minimum, maximum)

        return self._convert(node, default, "an integer", conv)

    @overload
    def as_float(
        self,
        node: Node | None,
        default: float,
        *,
        minimum: float | None = ...,
        maximum: float | None = ...,
        allow_nonfinite: bool = ...,
    ) -> float: ...
    @overload
    def as_float(
        self,
        node: Node | None,
        default: None = None,
        *,
        minimum: float | None = ...,
        maximum: float | None = ...,
        allow_nonfinite: bool = ...,
    ) -> float | None: ...
    def as_float(
        self,
        node: Node | None,
        default: float | None = None,
        *,
        minimum: float | None = None,
        maximum: float | None = None,
        allow_nonfinite: bool = False,
    ) -> float | None:
        """A decimal number (``1``, ``-0.5``, ``1e-3``); nan/inf only if ``allow_nonfinite``."""

        def conv(text: str) -> float:
            if re.fullmatch(r"[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?", text):
                return _bounded(float(text), minimum, maximum)
            special = {".inf": "inf", "inf": "inf", ".nan": "nan", "nan": "nan"}
            sign, bare = (text[0], text[1:]) if text[:1] in "+-" else ("", text)
            if bare.lower() in special:
                if not allow_nonfinite:
                    msg = f"'{text}' is not a finite number"
                    raise ValueError(msg)
                return float(sign + special[bare.lower()])
            msg = f"expected a number, found '{text}'"
            raise ValueError(msg)

        return self._convert(node, default, "a number", conv)

    @overload
    def as_bool(self, node: Node | None, default: bool) -> bool: ...
    @overload
    def as_bool(self, node: Node | None, default: None = None) -> bool | None: ...
    def as_bool(self, node: Node | None, default: bool | None = None) -> bool | None:
        """Only ``true`` or ``false``; YAML 1.1 spellings (``on``, ``yes``, ``True``) are errors."""
        return self._convert(node, default, "true or false", _parse_bool)

    @overload
    def as_duration(
        self, node: Node | None, default: Duration, *, minimum: Duration | None = ...
    ) -> Duration: ...
    @overload
    def as_duration(
        self, node: Node | None, default: None = None, *, minimum: Duration | None = ...
    ) -> Duration | None: ...
    def as_duration(
        self, node: Node | None, default: Duration | None = None, *, minimum: Duration | None = None
    ) -> Duration | None:
        """A duration (:mod:`riskwatch.durations`) of at least ``minimum``."""

        def conv(text: str) -> Duration:
            d = parse_duration(text)
            if minimum is not None and d < minimum:
                msg = f"duration '{text}' is below the minimum of {minimum}"
                raise ValueError(msg)
            return d

        return self._convert(node, default, "a duration", conv)

    @overload
    def as_enum(self, node: Node | None, choices: Sequence[str], default: str) -> str: ...
    @overload
    def as_enum(
        self, node: Node | None, choices: Sequence[str], default: None = None
    ) -> str | None: ...
    def as_enum(
        self, node: Node | None, choices: Sequence[str], default: str | None = None
    ) -> str | None:
        """One of ``choices`` (exact spelling)."""

        def conv(text: str) -> str:
            if text in choices:
                return text
            msg = f"'{text}' is not one of {', '.join(choices)}{did_you_mean(text, choices)}"
            raise ValueError(msg)

        return self._convert(node, default, "one of " + ", ".join(choices), conv)

    @overload
    def as_time_of_day(self, node: Node | None, default: time) -> time: ...
    @overload
    def as_time_of_day(self, node: Node | None, default: None = None) -> time | None: ...
    def as_time_of_day(self, node: Node | None, default: time | None = None) -> time | None:
        """A time of day written ``HH:MM`` (24-hour, two digits each), e.g. ``"00:00"``."""
        return self._convert(node, default, "a time of day", _parse_time_of_day)

    @overload
    def as_timezone(self, node: Node | None, default: zoneinfo.ZoneInfo) -> zoneinfo.ZoneInfo: ...
    @overload
    def as_timezone(self, node: Node | None, default: None = None) -> zoneinfo.ZoneInfo | None: ...
    def as_timezone(
        self, node: Node | None, default: zoneinfo.ZoneInfo | None = None
    ) -> zoneinfo.ZoneInfo | None:
        """An IANA time zone name (``UTC``, ``Europe/London``), resolved with zoneinfo."""
        return self._convert(node, default, "a time zone", _parse_timezone)


_NumT = TypeVar("_NumT", int, float)


def _bounded(value: _NumT, minimum: _NumT | None, maximum: _NumT | None) -> _NumT:
    if minimum is not None and value < minimum:
        msg = f"{value} is below the minimum of {minimum}"
        raise ValueError(msg)
    if maximum is not None and value > maximum:
        msg = f"{value} is above the maximum of {maximum}"
        raise ValueError(msg)
    return value


_AMBIGUOUS_BOOLS = frozenset(
    {"y", "yes", "n", "no", "on", "off", "true", "false"}
)  # compared lower-cased; exact "true"/"false" are accepted before this check


def _parse_bool(text: str) -> bool:
    if text == "true":
        return True
    if text == "false":
        return False
    if text.lower() in _AMBIGUOUS_BOOLS:
        msg = f"ambiguous boolean '{text}': write true or false"
        raise ValueError(msg)
    msg = f"expected true or false, found '{text}'"
    raise ValueError(msg)


def _parse_time_of_day(text: str) -> time:
    m = re.fullmatch(r"([01]\d|2[0-3]):([0-5]\d)", text)
    if m:
        return time(int(m.group(1)), int(m.group(2)))
    m = re.fullmatch(r"(\d):([0-5]\d)", text)
    hint = f"; write 0{text}" if m else "; write HH:MM, e.g. 00:00 or 17:30"
    msg = f"invalid time of day '{text}'{hint}"
    raise ValueError(msg)


def _parse_timezone(text: str) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(text)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        hint = did_you_mean(text, zoneinfo.available_timezones())
        msg = f"unknown time zone '{text}'{hint}"
        raise ValueError(msg) from None
