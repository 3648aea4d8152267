"""Expression errors: fixed, named codes with a position inside the expression text.

Nothing in this package raises while checking text: `parse_and_check` returns a list of
`ExprError` values. `ExpressionInvalid` exists for callers that prefer an exception
(`compile_expression`); the rule loader turns each `ExprError` into `FILE:LINE:COL: message`
by adding the expression's own position in the YAML file.

Offsets are 0-based character offsets into the expression text; `line` and `col` are
1-based and count characters (not bytes) within the expression text.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from riskwatch.errors import RiskwatchError

__all__ = ["Code", "ExprError", "ExpressionInvalid", "position_of"]


class Code(enum.Enum):
    """Every error the lexer, parser and checker can report; the value is a stable slug."""

    # lexer
    UNEXPECTED_CHARACTER = "unexpected-character"
    STRING_NOT_ALLOWED = "string-not-allowed"
    ATTRIBUTE_ACCESS = "attribute-access"
    SUBSCRIPT = "subscript"
    BAD_NUMBER = "bad-number"
    NUMBER_OUT_OF_RANGE = "number-out-of-range"
    WRONG_OPERATOR = "wrong-operator"
    TOO_LONG = "too-long"
    # parser
    EMPTY = "empty"
    UNEXPECTED_TOKEN = "unexpected-token"  # noqa: S105 - an error slug, not a secret
    UNEXPECTED_END = "unexpected-end"
    UNCLOSED_PAREN = "unclosed-paren"
    CHAINED_COMPARISON = "chained-comparison"
    TOO_DEEP = "too-deep"
    # checker
    UNKNOWN_NAME = "unknown-name"
    POSITION_NAME_IN_ACCOUNT_RULE = "position-name-in-account-rule"
    FUNCTION_NOT_CALLED = "function-not-called"
    UNKNOWN_FUNCTION = "unknown-function"
    WRONG_ARITY = "wrong-arity"
    TYPE_MISMATCH = "type-mismatch"
    DURATION_MISPLACED = "duration-misplaced"
    WINDOW_NEEDS_NAME = "window-needs-name"
    WINDOW_NEEDS_DURATION = "window-needs-duration"
    DURATION_NOT_POSITIVE = "duration-not-positive"
    DURATION_TOO_LONG = "duration-too-long"
    WRONG_RESULT_TYPE = "wrong-result-type"


@dataclass(frozen=True, slots=True)
class ExprError:
    """One problem in an expression, e.g. ``unknown name 'margin_usag'`` at 1:1."""

    code: Code
    message: str
    offset: int
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.line}:{self.col}: {self.message}"


def position_of(text: str, offset: int) -> tuple[int, int]:
    """Return the 1-based (line, col) of `offset` in `text`."""
    line = text.count("\n", 0, offset) + 1
    col = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return line, col


class ExpressionInvalid(RiskwatchError, ValueError):
    """An expression did not pass the checker; `errors` lists every problem found.

    Raised only by `compile_expression`; the rule loader reports each error as
    `FILE:LINE:COL: message` and refuses the rule file (exit 2 at start, keep the old
    rules on reload).
    """

    def __init__(self, text: str, errors: list[ExprError]) -> None:
        self.text = text
        self.errors = errors
        msg = "; ".join(str(e) for e in errors)
        super().__init__(msg)
