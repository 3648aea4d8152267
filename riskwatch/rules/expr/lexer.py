"""Hand-written lexer: expression text -> tokens with positions, plus every lexical error.

Numbers: `12`, `0.8`, `.5`, `1e-3`. Durations: a number directly followed by a unit,
in the grammar of :mod:`riskwatch.durations` (`500ms`, `1.5s`, `5m`, `1h30m`, `1w`). Names: ASCII
letters, digits and `_`, not starting with a digit. Anything that could reach Python —
strings, attribute access, subscripts — is refused here with its own error code.
"""

from __future__ import annotations

import math
import re

from riskwatch.durations import parse_duration

from .errors import Code, ExprError, position_of
from .tokens import KEYWORDS, Kind, Token

__all__ = ["MAX_LENGTH", "tokenize"]

MAX_LENGTH = 2000
"""Longest accepted expression, in characters (keeps parsing and checking bounded)."""

_NUMBER = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_WORD_TAIL = re.compile(r"[0-9A-Za-z_.]*")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)

_SINGLE = {
    "+": Kind.PLUS,
    "-": Kind.MINUS,
    "*": Kind.STAR,
    "/": Kind.SLASH,
    "%": Kind.PERCENT,
    "(": Kind.LPAREN,
    ")": Kind.RPAREN,
    ",": Kind.COMMA,
    "<": Kind.LT,
    ">": Kind.GT,
}
_DOUBLE = {"==": Kind.EQ, "!=": Kind.NE, "<=": Kind.LE, ">=": Kind.GE}
# Spellings from other languages, refused with a hint instead of "unexpected character".
_FOREIGN = {"&&": "and", "||": "or", "**": None, "//": None}
_FOREIGN_SINGLE = {"!": "not", "=": "==", "&": "and", "|": "or"}


def tokenize(text: str) -> tuple[list[Token], list[ExprError]]:
    """Split `text` into tokens ending with one EOF token; report every lexical error.

    Never raises. When the error list is non-empty the tokens must not be parsed.
    """
    lexer = _Lexer(text)
    lexer.run()
    return lexer.tokens, lexer.errors


class _Lexer:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens: list[Token] = []
        self.errors: list[ExprError] = []

    def err(self, code: Code, msg: str, at: int) -> None:
        line, col = position_of(self.text, at)
        self.errors.append(ExprError(code, msg, at, line, col))

    def tok(self, kind: Kind, start: int, end: int, value: float = 0.0) -> None:
        line, col = position_of(self.text, start)
        self.tokens.append(Token(kind, self.text[start:end], start, line, col, value))

    def run(self) -> None:
        text = self.text
        n = len(text)
        if n > MAX_LENGTH:
            self.err(Code.TOO_LONG, f"expression is {n} characters long, limit {MAX_LENGTH}", 0)
            self.tok(Kind.EOF, 0, 0)
            return
        i = 0
        while i < n:
            i = self.step(i)
        self.tok(Kind.EOF, n, n)

    def step(self, i: int) -> int:
        """Lex one token or one error at `i`; return the next offset."""
        text = self.text
        ch = text[i]
        if ch in " \t\r\n":
            return i + 1
        number = _NUMBER.match(text, i)
        if number is not None:
            return self.number(i, number)
        name = _NAME.match(text, i)
        if name is not None:
            self.tok(KEYWORDS.get(name.group(), Kind.NAME), i, name.end())
            return name.end()
        pair = text[i : i + 2]
        if pair in _DOUBLE:
            self.tok(_DOUBLE[pair], i, i + 2)
            return i + 2
        if pair in _FOREIGN:
            hint = _FOREIGN[pair]
            msg = f"unknown operator '{pair}'" + (f" (use '{hint}')" if hint else "")
            self.err(Code.WRONG_OPERATOR, msg, i)
            return i + 2
        if ch in _SINGLE:
            self.tok(_SINGLE[ch], i, i + 1)
            return i + 1
        if ch in _FOREIGN_SINGLE:
            msg = f"unknown operator '{ch}' (use '{_FOREIGN_SINGLE[ch]}')"
            self.err(Code.WRONG_OPERATOR, msg, i)
        elif ch in "'\"`":
            self.err(Code.STRING_NOT_ALLOWED, "strings are not allowed in expressions", i)
            end = text.find(ch, i + 1)
            return len(text) if end < 0 else end + 1
        elif ch == ".":
            self.err(Code.ATTRIBUTE_ACCESS, "attribute access ('.') is not allowed", i)
        elif ch in "[]{}":
            msg = f"unexpected '{ch}': subscripts and collections are not allowed"
            self.err(Code.SUBSCRIPT, msg, i)
        else:
            self.err(Code.UNEXPECTED_CHARACTER, f"unexpected character {ch!r}", i)
        return i + 1

    def number(self, i: int, m: re.Match[str]) -> int:
        """Lex the number or duration matched at `i`; return the offset after it."""
        text = self.text
        end = m.end()
        if end < len(text) and _NAME.match(text, end) is not None:
            tail = _WORD_TAIL.match(text, i)
            stop = tail.end() if tail is not None else end
            word = text[i:stop]
            try:
                self.tok(Kind.DURATION, i, stop, parse_duration(word).seconds)
            except ValueError as exc:
                self.err(Code.BAD_NUMBER, str(exc), i)
            return stop
        value = float(m.group())
        if not math.isfinite(value):
            self.err(Code.NUMBER_OUT_OF_RANGE, f"number '{m.group()}' is out of range", i)
        else:
            self.tok(Kind.NUMBER, i, end, value)
        return end
