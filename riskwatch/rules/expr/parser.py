"""Recursive-descent parser: tokens -> syntax tree.

Grammar, loosest binding first (comparisons do not chain: `a < b < c` is an error)::

    expr    := or
    or      := and ("or" and)*
    and     := not ("and" not)*
    not     := "not" not | cmp
    cmp     := sum [("==" | "!=" | "<" | "<=" | ">" | ">=") sum]
    sum     := product (("+" | "-") product)*
    product := unary (("*" | "/" | "%") unary)*
    unary   := "-" unary | primary
    primary := NUMBER | DURATION | NAME | NAME "(" [expr ("," expr)*] ")" | "(" expr ")"

The parser stops at the first syntax error (later ones are usually its echoes); lexical
errors are all reported, and the checker reports every type and name error.
"""

from __future__ import annotations

from riskwatch.errors import RiskwatchError

from .errors import Code, ExprError
from .lexer import tokenize
from .syntax import Binary, BoolOp, Call, Compare, DurationLiteral, Expr, Name, Negate, Not, Number
from .tokens import COMPARISONS, Kind, Token

__all__ = ["MAX_DEPTH", "parse"]

MAX_DEPTH = 60
"""Deepest accepted syntax tree; keeps every later recursive pass far from Python's limit."""


class SyntaxStop(RiskwatchError):
    """Internal: carries the first syntax error up to `parse`, which returns it.

    Never leaves this module.
    """

    def __init__(self, error: ExprError) -> None:
        super().__init__(error.message)
        self.error = error


def parse(text: str) -> Expr | list[ExprError]:
    """Parse `text` into a tree, or return the errors (never raises)."""
    tokens, errors = tokenize(text)
    if errors:
        return errors
    parser = _Parser(text, tokens)
    try:
        if tokens[0].kind is Kind.EOF:
            parser.fail(Code.EMPTY, "empty expression", tokens[0])
        node = parser.expr()
        if parser.peek.kind is not Kind.EOF:
            parser.unexpected(parser.peek)
        if _depth(node) > MAX_DEPTH:
            parser.fail(
                Code.TOO_DEEP, f"expression nests deeper than {MAX_DEPTH} levels", tokens[0]
            )
    except SyntaxStop as stop:
        return [stop.error]
    return node


class _Parser:
    def __init__(self, text: str, tokens: list[Token]) -> None:
        self.text = text
        self.tokens = tokens
        self.i = 0
        self.nesting = 0

    @property
    def peek(self) -> Token:
        return self.tokens[self.i]

    def advance(self) -> Token:
        token = self.tokens[self.i]
        if token.kind is not Kind.EOF:
            self.i += 1
        return token

    def fail(self, code: Code, msg: str, token: Token) -> None:
        raise SyntaxStop(ExprError(code, msg, token.offset, token.line, token.col))

    def unexpected(self, token: Token) -> None:
        if token.kind is Kind.EOF:
            self.fail(Code.UNEXPECTED_END, "unexpected end of expression", token)
        self.fail(Code.UNEXPECTED_TOKEN, f"unexpected token '{token.text}'", token)

    def enter(self, token: Token) -> None:
        self.nesting += 1
        if self.nesting > MAX_DEPTH:
            self.fail(Code.TOO_DEEP, f"expression nests deeper than {MAX_DEPTH} levels", token)

    def expr(self) -> Expr:
        return self.or_()

    def or_(self) -> Expr:
        node = self.and_()
        while self.peek.kind is Kind.OR:
            op = self.advance()
            node = BoolOp("or", node, self.and_(), _pos(node), op.offset)
        return node

    def and_(self) -> Expr:
        node = self.not_()
        while self.peek.kind is Kind.AND:
            op = self.advance()
            node = BoolOp("and", node, self.not_(), _pos(node), op.offset)
        return node

    def not_(self) -> Expr:
        if self.peek.kind is Kind.NOT:
            op = self.advance()
            self.enter(op)
            operand = self.not_()
            self.nesting -= 1
            return Not(operand, op.offset)
        return self.cmp()

    def cmp(self) -> Expr:
        node = self.sum()
        if self.peek.kind in COMPARISONS:
            op = self.advance()
            node = Compare(op.kind.value, node, self.sum(), _pos(node), op.offset)
            if self.peek.kind in COMPARISONS:
                msg = "comparisons cannot be chained (use 'and': a < b and b < c)"
                self.fail(Code.CHAINED_COMPARISON, msg, self.peek)
        return node

    def sum(self) -> Expr:
        node = self.product()
        while self.peek.kind in (Kind.PLUS, Kind.MINUS):
            op = self.advance()
            node = Binary(op.kind.value, node, self.product(), _pos(node), op.offset)
        return node

    def product(self) -> Expr:
        node = self.unary()
        while self.peek.kind in (Kind.STAR, Kind.SLASH, Kind.PERCENT):
            op = self.advance()
            node = Binary(op.kind.value, node, self.unary(), _pos(node), op.offset)
        return node

    def unary(self) -> Expr:
        if self.peek.kind is Kind.MINUS:
            op = self.advance()
            self.enter(op)
            operand = self.unary()
            self.nesting -= 1
            return Negate(operand, op.offset)
        return self.primary()

    def primary(self) -> Expr:
        token = self.advance()
        if token.kind is Kind.NUMBER:
            return Number(token.value, token.offset)
        if token.kind is Kind.DURATION:
            return DurationLiteral(token.value, token.text, token.offset)
        if token.kind is Kind.NAME:
            if self.peek.kind is Kind.LPAREN:
                return self.call(token)
            return Name(token.text, token.offset)
        if token.kind is Kind.LPAREN:
            self.enter(token)
            node = self.expr()
            self.close(token)
            self.nesting -= 1
            return node
        self.unexpected(token)
        raise AssertionError  # pragma: no cover - unexpected() always raises

    def call(self, name: Token) -> Expr:
        lparen = self.advance()
        self.enter(lparen)
        args: list[Expr] = []
        if self.peek.kind is not Kind.RPAREN:
            args.append(self.expr())
            while self.peek.kind is Kind.COMMA:
                self.advance()
                args.append(self.expr())
        close = self.close(lparen)
        self.nesting -= 1
        return Call(name.text, tuple(args), name.offset, close.offset)

    def close(self, lparen: Token) -> Token:
        token = self.peek
        if token.kind is Kind.RPAREN:
            return self.advance()
        if token.kind is Kind.EOF:
            self.fail(Code.UNCLOSED_PAREN, "'(' is never closed", lparen)
        self.unexpected(token)
        raise AssertionError  # pragma: no cover - unexpected() always raises


def _pos(node: Expr) -> int:
    return node.pos


def _depth(root: Expr) -> int:
    """Depth of the tree, computed without recursion (left-leaning chains can be long)."""
    deepest = 0
    stack: list[tuple[Expr, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(node, Negate | Not):
            stack.append((node.operand, depth + 1))
        elif isinstance(node, Binary | Compare | BoolOp):
            stack.append((node.left, depth + 1))
            stack.append((node.right, depth + 1))
        elif isinstance(node, Call):
            stack.extend((arg, depth + 1) for arg in node.args)
    return deepest
