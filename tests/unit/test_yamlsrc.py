"""The position-aware YAML layer: parsing, positions inside scalars, typed converters."""

from __future__ import annotations

import math
from datetime import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from riskwatch.durations import Duration
from riskwatch.yamlsrc import (
    MAX_NODES,
    Map,
    Node,
    Problems,
    Reader,
    Scalar,
    Seq,
    did_you_mean,
    expand_env,
    parse,
)


def _doc(text: str) -> tuple[Node | None, Problems]:
    problems = Problems()
    return parse(text, "f.yaml", problems), problems


def _value(text: str, key: str = "k") -> Node:
    root, problems = _doc(text)
    assert not problems, [str(p) for p in problems]
    assert isinstance(root, Map)
    return dict((k.value, v) for k, v in root.pairs)[key]


def _scalar(text: str, key: str = "k") -> Scalar:
    node = _value(text, key)
    assert isinstance(node, Scalar)
    return node


def _convert(method: str, value: str, **kwargs: object) -> tuple[object, list[str]]:
    problems = Problems()
    reader = Reader(problems)
    node = _value(f"k: {value}\n")
    result = getattr(reader, method)(node, **kwargs)
    return result, [str(p) for p in problems]


# ------------------------------------------------------------------ parsing


def test_scalars_stay_strings() -> None:
    """YAML 1.1 implicit types are not resolved: on, 1:30, 010 and null stay text."""
    root, problems = _doc("a: on\nb: 1:30\nc: 010\nd: null\ne: 1.5\n")
    assert not problems
    assert isinstance(root, Map)
    assert [(k.value, v.value) for k, v in root.pairs if isinstance(v, Scalar)] == [
        ("a", "on"),
        ("b", "1:30"),
        ("c", "010"),
        ("d", "null"),
        ("e", "1.5"),
    ]


def test_positions_are_one_based() -> None:
    """Node marks carry the file name and 1-based line and column."""
    node = _scalar("x: 1\nk:   value\n")
    assert (node.start.file, node.start.line, node.start.col) == ("f.yaml", 2, 6)


def test_duplicate_key_reports_both_positions() -> None:
    """A repeated key is a problem at the second one, naming the first's position."""
    root, problems = _doc("a: 1\nb:\n  c: 1\n  c: 2\n")
    assert [str(p) for p in problems] == ["f.yaml:4:3: duplicate key 'c' (first defined at 3:3)"]
    assert isinstance(root, Map)
    b = root.pairs[1][1]
    assert isinstance(b, Map)
    c = b.pairs[0][1]
    assert len(b.pairs) == 1
    assert isinstance(c, Scalar)
    assert c.value == "1"


def test_aliases_are_allowed() -> None:
    """An alias yields the anchored node, with the anchor's position."""
    root, problems = _doc("a: &x [1, 2]\nb: *x\n")
    assert not problems
    assert isinstance(root, Map)
    assert root.pairs[0][1] is root.pairs[1][1]


def test_merge_keys_are_rejected() -> None:
    """A merge key is a problem with a hint."""
    _, problems = _doc("a: &x {p: 1}\nb:\n  <<: *x\n")
    assert [str(p) for p in problems] == [
        "f.yaml:3:3: merge keys ('<<') are not supported; repeat the keys or alias the whole value"
    ]


def test_quoted_double_angle_is_an_ordinary_key() -> None:
    """A quoted '<<' is a plain string key, not a merge."""
    _, problems = _doc("'<<': 1\n")
    assert not problems


def test_unsupported_tags_are_rejected() -> None:
    """Explicit tags other than !!str, !!seq and !!map are problems."""
    _, problems = _doc("a: !!int 3\nb: !!str 4\nc: !custom x\nd: !!seq [1]\n")
    assert [str(p) for p in problems] == [
        "f.yaml:1:4: unsupported tag '!!int'",
        "f.yaml:3:4: unsupported tag '!custom'",
    ]


def test_recursive_alias_is_a_problem() -> None:
    """A sequence containing itself is reported, not walked forever."""
    _, problems = _doc("a: &x [*x]\n")
    assert [str(p) for p in problems] == ["f.yaml:1:4: recursive alias"]


def test_alias_bomb_is_refused() -> None:
    """A billion-laughs document is refused once its expansion exceeds MAX_NODES."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 8):
        refs = ", ".join([f"*a{i - 1}"] * 10)
        lines.append(f"a{i}: &a{i} [{refs}]")
    _, problems = _doc("\n".join(lines) + "\n")
    messages = [p.message for p in problems]
    assert messages == [f"document too large after alias expansion (over {MAX_NODES} nodes)"]


def test_syntax_error_has_position() -> None:
    """A YAML syntax error becomes one problem at the parser's position."""
    root, problems = _doc("a: [1, 2\nb: 3\n")
    assert root is None
    assert [str(p) for p in problems] == [
        "f.yaml:2:2: invalid yaml: expected ',' or ']', but got ':' "
        "(in a flow sequence started at 1:4)"
    ]


def test_several_documents_are_refused() -> None:
    """A stream with two documents is a problem at the second one."""
    _, problems = _doc("a: 1\n---\nb: 2\n")
    assert [str(p) for p in problems] == [
        "f.yaml:2:1: invalid yaml: expected a single document in the stream, "
        "but found another document"
    ]


def test_unprintable_character_is_positioned() -> None:
    """A control character is reported at its line and column."""
    _, problems = _doc("a: 1\nb: x\x07\n")
    assert [str(p) for p in problems] == ["f.yaml:2:5: invalid yaml: unacceptable character #x0007"]


def test_empty_document_is_none() -> None:
    """A document with only comments parses to None with no problem."""
    root, problems = _doc("# nothing\n")
    assert root is None
    assert not problems


def test_complex_keys_are_refused() -> None:
    """A non-scalar key is a problem."""
    _, problems = _doc("? [a, b]\n: 1\n")
    assert [p.message for p in problems] == ["mapping keys must be plain strings"]


# ------------------------------------------------------------------ positions inside scalars


@pytest.mark.parametrize(
    ("line", "offset", "col"),
    [
        ("k: margin > 0.8", 7, 11),  # plain
        ("k: 'it''s x'", 3, 9),  # single-quoted, '' is one character
        ("k: 'it''s x'", 5, 11),
        ('k: "a\\tb\\x41c d"', 2, 8),  # double-quoted escapes
        ('k: "a\\tb\\x41c d"', 3, 9),
        ('k: "a\\tb\\x41c d"', 4, 13),
        ('k: "a\\tb\\x41c d"', 6, 15),
        ('k: "\\u00e9x"', 1, 11),
    ],
)
def test_position_at_single_line(line: str, offset: int, col: int) -> None:
    """position_at maps a character of the parsed value to its source column."""
    node = _scalar(line + "\n")
    mark = node.position_at(offset)
    assert (mark.line, mark.col) == (1, col)
    if node.style == "":
        assert line[col - 1] == node.value[offset]


def test_position_at_literal_block() -> None:
    """In a literal block, characters map to their own line and column."""
    node = _scalar("k: |\n  first line\n    second\n")
    assert node.value == "first line\n  second\n"
    assert (node.position_at(0).line, node.position_at(0).col) == (2, 3)
    s = node.value.index("second")
    assert (node.position_at(s).line, node.position_at(s).col) == (3, 5)


def test_position_at_folded_plain() -> None:
    """A plain scalar folded over lines maps words after the fold to their line."""
    node = _scalar("k: a >\n  b and\n  c\n")
    assert node.value == "a > b and c"
    mark = node.position_at(node.value.index("c"))
    assert (mark.line, mark.col) == (3, 3)
    mark = node.position_at(node.value.index("and"))
    assert (mark.line, mark.col) == (2, 5)


def test_position_at_end_and_clamp() -> None:
    """Offsets at or beyond the end map just past the last character."""
    node = _scalar("k: abc\n")
    assert node.position_at(3).col == 7
    assert node.position_at(99).col == 7


def test_problem_in_uses_position_at() -> None:
    """Reader.problem_in records a problem at a column inside the string."""
    problems = Problems()
    node = _scalar("k:   'x > y'\n")
    Reader(problems).problem_in(node, 4, "unknown name 'y'")
    assert [str(p) for p in problems] == ["f.yaml:1:11: unknown name 'y'"]


@given(st.text(alphabet="ab '\"\\\t", max_size=12))
def test_position_at_never_crashes_on_quoted(text: str) -> None:
    """position_at returns a mark inside the line for any double-quoted string."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\t", "\\t")
    node = _scalar(f'k: "{escaped}"\n')
    assert node.value == text
    for i in range(len(text) + 1):
        mark = node.position_at(i)
        assert mark.line == 1
        assert 5 <= mark.col <= 5 + len(escaped)


# ------------------------------------------------------------------ reader: structure


def test_mapping_unknown_missing_and_null_required() -> None:
    """mapping reports unknown keys with a hint, missing required keys and null values."""
    problems = Problems()
    root, _ = _doc("nmae: x\nkind:\nother: 1\n")
    fields = Reader(problems).mapping(root, required={"name", "kind"}, optional={"other"})
    assert [str(p) for p in problems] == [
        "f.yaml:1:1: unknown key 'nmae' (did you mean 'name'?)",
        "f.yaml:2:1: missing value for required key 'kind'",
        "f.yaml:1:1: missing required key 'name'",
    ]
    assert fields.get("kind") is None
    assert "other" in fields
    assert "kind" not in fields
    assert fields.key("kind") is not None


def test_mapping_of_absent_section_is_empty() -> None:
    """mapping(None) gives empty fields and no problem."""
    problems = Problems()
    fields = Reader(problems).mapping(None, optional={"a"})
    assert fields.get("a") is None
    assert not problems


def test_mapping_wrong_kind() -> None:
    """A list where a mapping is expected is a problem naming what was found."""
    problems = Problems()
    Reader(problems).mapping(_value("k: [1]\n"), optional={"a"})
    assert [p.message for p in problems] == ["expected a mapping, found a list"]


def test_list_and_str_list() -> None:
    """as_list checks the kind; as_str_list drops and reports bad items."""
    problems = Problems()
    reader = Reader(problems)
    assert reader.as_str_list(_value("k: [a, '', {x: 1}, b]\n")) == ["a", "b"]
    assert reader.as_list(_value("k: a\n")) == ()
    assert [p.message for p in problems] == [
        "expected a non-empty string",
        "expected a string, found a mapping",
        "expected a list, found a string",
    ]


def test_str_map() -> None:
    """as_str_map accepts any keys with string values."""
    problems = Problems()
    assert Reader(problems).as_str_map(_value("k: {a: x, b: ''}\n")) == {"a": "x", "b": ""}
    assert not problems


def test_problems_sorted_by_file_then_position() -> None:
    """Problems.sorted keeps files in first-seen order and sorts positions within each."""
    problems = Problems()
    root, _ = _doc("a: 1\nb: 2\n")
    assert isinstance(root, Map)
    problems.add(root.pairs[1][0], "second")
    problems.add(root.pairs[0][0], "first")
    assert [p.message for p in problems.sorted()] == ["first", "second"]
    assert len(problems) == 2
    assert bool(problems)


# ------------------------------------------------------------------ reader: converters


@pytest.mark.parametrize(
    ("value", "expected", "errors"),
    [
        ("true", True, []),
        ("false", False, []),
        ("'true'", True, []),
        ("on", None, ["f.yaml:1:4: ambiguous boolean 'on': write true or false"]),
        ("yes", None, ["f.yaml:1:4: ambiguous boolean 'yes': write true or false"]),
        ("off", None, ["f.yaml:1:4: ambiguous boolean 'off': write true or false"]),
        ("No", None, ["f.yaml:1:4: ambiguous boolean 'No': write true or false"]),
        ("True", None, ["f.yaml:1:4: ambiguous boolean 'True': write true or false"]),
        ("1", None, ["f.yaml:1:4: expected true or false, found '1'"]),
        ("[true]", None, ["f.yaml:1:4: expected true or false, found a list"]),
        ("null", None, ["f.yaml:1:4: expected true or false, found null"]),
    ],
)
def test_as_bool(value: str, expected: bool | None, errors: list[str]) -> None:
    """Only true and false are booleans; YAML 1.1 spellings get a hint."""
    assert _convert("as_bool", value) == (expected, errors)


def test_as_duration_minimum_and_default() -> None:
    """as_duration enforces a minimum and returns the default when absent or invalid."""
    assert _convert("as_duration", "0s", minimum=Duration(1)) == (
        None,
        ["f.yaml:1:4: duration '0s' is below the minimum of 1ms"],
    )
    problems = Problems()
    assert Reader(problems).as_duration(None, Duration(7)) == Duration(7)
    assert Reader(problems).as_duration(_value("k: x\n"), Duration(7)) == Duration(7)
    assert len(problems) == 1


@pytest.mark.parametrize(
    ("value", "expected", "message"),
    [
        ("42", 42, None),
        ("-3", -3, None),
        ("+7", 7, None),
        ("0", 0, None),
        ("010", None, "ambiguous integer '010': remove the leading zero"),
        ("0x10", None, "expected an integer, found '0x10'"),
        ("1_000", None, "expected an integer, found '1_000'"),
        ("1.0", None, "expected an integer, found '1.0'"),
    ],
)
def test_as_int(value: str, expected: int | None, message: str | None) -> None:
    """Integers are plain decimal; octal-looking and underscored forms are refused."""
    result, errors = _convert("as_int", value)
    assert result == expected
    assert errors == ([] if message is None else [f"f.yaml:1:4: {message}"])


def test_as_int_bounds() -> None:
    """as_int reports values outside the bounds."""
    assert _convert("as_int", "0", minimum=1)[1] == ["f.yaml:1:4: 0 is below the minimum of 1"]
    assert _convert("as_int", "9", maximum=5)[1] == ["f.yaml:1:4: 9 is above the maximum of 5"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", 1.0), ("-0.5", -0.5), (".5", 0.5), ("1e-3", 0.001), ("2.", 2.0)],
)
def test_as_float(value: str, expected: float) -> None:
    """Decimal numbers convert to float."""
    assert _convert("as_float", value) == (expected, [])


@pytest.mark.parametrize("value", ["nan", ".nan", "inf", "-.inf", ".Inf", "+inf"])
def test_as_float_refuses_nonfinite(value: str) -> None:
    """nan and inf are refused unless allowed."""
    assert _convert("as_float", value) == (None, [f"f.yaml:1:4: '{value}' is not a finite number"])
    result, errors = _convert("as_float", value, allow_nonfinite=True)
    assert errors == []
    assert isinstance(result, float)
    assert not math.isfinite(result)


def test_as_float_refuses_other_text() -> None:
    """Underscores and words are not numbers."""
    assert _convert("as_float", "1_0")[1] == ["f.yaml:1:4: expected a number, found '1_0'"]
    assert _convert("as_float", "ten")[1] == ["f.yaml:1:4: expected a number, found 'ten'"]


def test_as_enum() -> None:
    """as_enum accepts exact choices and suggests a close one."""
    assert _convert("as_enum", "armed", choices=("dry-run", "armed")) == ("armed", [])
    assert _convert("as_enum", "armd", choices=("dry-run", "armed")) == (
        None,
        ["f.yaml:1:4: 'armd' is not one of dry-run, armed (did you mean 'armed'?)"],
    )


@pytest.mark.parametrize(
    ("value", "expected", "message"),
    [
        ("00:00", time(0, 0), None),
        ("'23:59'", time(23, 59), None),
        ("9:30", None, "invalid time of day '9:30'; write 09:30"),
        ("24:00", None, "invalid time of day '24:00'; write HH:MM, e.g. 00:00 or 17:30"),
        ("12:60", None, "invalid time of day '12:60'; write HH:MM, e.g. 00:00 or 17:30"),
    ],
)
def test_as_time_of_day(value: str, expected: time | None, message: str | None) -> None:
    """Times of day are HH:MM, two digits each."""
    result, errors = _convert("as_time_of_day", value)
    assert result == expected
    assert errors == ([] if message is None else [f"f.yaml:1:4: {message}"])


def test_as_timezone() -> None:
    """IANA names resolve; unknown ones get a suggestion; paths are refused."""
    result, errors = _convert("as_timezone", "Europe/London")
    assert errors == []
    assert str(result) == "Europe/London"
    assert _convert("as_timezone", "Europe/Londn")[1] == [
        "f.yaml:1:4: unknown time zone 'Europe/Londn' (did you mean 'Europe/London'?)"
    ]
    assert _convert("as_timezone", "../etc/passwd")[1] == [
        "f.yaml:1:4: unknown time zone '../etc/passwd'"
    ]


def test_as_str_never_echoes_the_value() -> None:
    """String conversion problems describe the kind found, never the text."""
    assert _convert("as_str", "{token: hunter2}") == (
        None,
        ["f.yaml:1:4: expected a string, found a mapping"],
    )
    assert _convert("as_str", "''") == (None, ["f.yaml:1:4: expected a non-empty string"])
    assert _convert("as_str", "''", allow_empty=True) == ("", [])


def test_converters_return_default_when_absent() -> None:
    """None means absent: the default comes back and nothing is reported."""
    problems = Problems()
    r = Reader(problems)
    assert r.as_str(None, "d") == "d"
    assert r.as_int(None, 3) == 3
    assert r.as_float(None) is None
    assert r.as_bool(None, True) is True
    assert r.as_enum(None, ("a",), "a") == "a"
    assert not problems


# ------------------------------------------------------------------ environment


def test_expand_env_forms() -> None:
    """${VAR}, ${VAR:-default} and $$ expand; unknown or malformed references are reported."""
    env = {"A": "1", "EMPTY": ""}
    assert expand_env("x${A}y", env) == ("x1y", [])
    assert expand_env("${B:-two}", env) == ("two", [])
    assert expand_env("${EMPTY:-d}", env) == ("d", [])
    assert expand_env("${EMPTY}", env) == ("", [])
    assert expand_env("$$A $5 ${A:-}", env) == ("$A $5 1", [])
    assert expand_env("${B:-${A}}", env) == ("${A}", [])
    assert expand_env("a${MISSING}b", env) == (
        "ab",
        [(1, "environment variable MISSING is not set")],
    )
    assert expand_env("${9X}", env)[1] == [(0, "invalid variable reference '${9X}'")]
    assert expand_env("ab${A", env)[1] == [(2, "unterminated variable reference '${'")]


def test_reader_expands_env_at_position() -> None:
    """A Reader with environ expands values and reports unset variables at the '$'."""
    problems = Problems()
    r = Reader(problems, environ={"HOST": "h"})
    assert r.as_str(_value("k: ${HOST}:80\n")) == "h:80"
    assert r.as_str(_value('k: "x-${NOPE}"\n')) is None
    assert [str(p) for p in problems] == ["f.yaml:1:7: environment variable NOPE is not set"]


def test_reader_expands_each_node_once() -> None:
    """Reading the same node twice reports its expansion problem once."""
    problems = Problems()
    r = Reader(problems, environ={})
    node = _value("k: ${NOPE}\n")
    r.as_str(node)
    r.as_str(node)
    assert len(problems) == 1


def test_reader_without_environ_is_literal() -> None:
    """Without environ, ${VAR} stays as written."""
    problems = Problems()
    assert Reader(problems).as_str(_value("k: ${X}\n")) == "${X}"


def test_did_you_mean() -> None:
    """did_you_mean suggests only close words."""
    assert did_you_mean("stale_afetr", ["stale_after", "url"]) == " (did you mean 'stale_after'?)"
    assert did_you_mean("zzz", ["stale_after", "url"]) == ""


def test_node_kinds() -> None:
    """Node kinds name what was found, for messages."""
    root, _ = _doc("a: [1]\nb: {c: 1}\nd: x\ne:\n")
    assert isinstance(root, Map)
    assert [v.kind for _, v in root.pairs] == ["a list", "a mapping", "a string", "null"]
    assert isinstance(root.pairs[0][1], Seq)


@given(st.text(alphabet=st.sampled_from(list("ab:-[]{}&*!|>'\"#\n \t,?<%@`\\$\x07é")), max_size=40))
def test_parse_never_raises(text: str) -> None:
    """parse turns any text into a tree or problems, never an exception."""
    problems = Problems()
    root = parse(text, "f.yaml", problems)
    for p in problems:
        assert p.file == "f.yaml"
        assert p.line >= 0
    stack = [] if root is None else [root]
    while stack:
        node = stack.pop()
        if isinstance(node, Scalar):
            for i in range(len(node.value) + 1):
                assert node.position_at(i).line >= node.start.line
        elif isinstance(node, Seq):
            stack.extend(node.items)
        elif isinstance(node, Map):
            stack.extend(v for _, v in node.pairs)
