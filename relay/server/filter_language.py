"""Pub/Sub's subscription filter language: parsed once, matched per message.

The language is the one Google documents in "Filter messages from a
subscription" (https://cloud.google.com/pubsub/docs/subscription-message-filter,
section "Filter syntax")::

    filter  = "" | expr                      the empty filter matches every message
    expr    = unary { "AND" unary }          AND and OR cannot be mixed
            | unary { "OR" unary }           without parentheses
    unary   = { "NOT" | "-" } primary        NOT (or "-") binds tightest
    primary = "(" expr ")"
            | "attributes" ":" key           the message has the key
            | "attributes" "." key "=" string
            | "attributes" "." key "!=" string
            | "hasPrefix" "(" "attributes" "." key "," string ")"
    key     = name | string                  name: ASCII letters, digits, "_" and "-"

What the documentation fixes, and this module follows: operators are upper case
(``and`` is not ``AND``); ``hasPrefix`` is the only function; keys and values
are compared case-sensitively and exactly; a key with any other character is
written as a string literal (``attributes:"iana.org/language_tag"``); string
literals take backslash escapes (``\\" \\\\ \\n \\t``..., ``\\xHH``, ``\\uHHHH``,
``\\UHHHHHHHH``, octal ``\\ooo``); a filter is at most 256 bytes (UTF-8).
``attributes.k != "v"`` is ``NOT attributes.k = "v"``, so it matches a message
without ``k``; ``hasPrefix`` on a missing key is false. Only attributes can be
tested, never the data. Where the documentation is silent this module chooses:
string literals are double-quoted only, whitespace may separate any two tokens,
a blank (all-whitespace) filter is refused, and nesting has no limit but the
256 bytes.

``parse`` raises ``FilterError`` (a ``ValueError``) for anything else, naming
the 0-based character position and what was expected there.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

#: The longest filter Pub/Sub accepts, in UTF-8 bytes.
MAX_FILTER_BYTES = 256

Match = Callable[[Mapping[str, str]], bool]


class FilterError(ValueError):
    """A filter Pub/Sub would refuse; ``position`` is a 0-based character offset or None."""

    def __init__(self, detail: str, position: int | None = None) -> None:
        where = "" if position is None else f" at position {position}"
        super().__init__(f"invalid filter{where}: {detail}")
        self.detail = detail
        self.position = position


# The syntax tree: frozen, so a parsed filter can be shared by every thread.
@dataclass(frozen=True, slots=True)
class Has:
    key: str


@dataclass(frozen=True, slots=True)
class Equals:
    key: str
    value: str


@dataclass(frozen=True, slots=True)
class NotEquals:
    key: str
    value: str


@dataclass(frozen=True, slots=True)
class HasPrefix:
    key: str
    prefix: str


@dataclass(frozen=True, slots=True)
class Not:
    operand: Node


@dataclass(frozen=True, slots=True)
class And:
    operands: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    operands: tuple[Node, ...]


Node = Has | Equals | NotEquals | HasPrefix | Not | And | Or


@dataclass(frozen=True, slots=True)
class Filter:
    """A parsed filter. ``matches(attributes)`` says whether a message is delivered.

    ``source`` is the text, ``expression`` its syntax tree (None for the empty
    filter; two filters are equal when their trees are). ``matches`` is a plain
    function of a ``Mapping[str, str]`` compiled from the tree: it allocates
    nothing and is safe to call from any thread.
    """

    source: str = field(compare=False)
    expression: Node | None
    matches: Match = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        compiled = _everything if self.expression is None else _compile(self.expression)
        object.__setattr__(self, "matches", compiled)


def parse(source: str) -> Filter:
    """Parse a subscription filter; raise ``FilterError`` if Pub/Sub would refuse it."""
    size = len(source.encode("utf-8", "surrogatepass"))
    if size > MAX_FILTER_BYTES:
        raise FilterError(f"it is {size} bytes long; the limit is {MAX_FILTER_BYTES} bytes")
    if not source:
        return Filter(source, None)
    parser = _Parser(source)
    if parser.token.kind == "end":
        raise FilterError("it is blank; the empty string is the filter that matches all", 0)
    node = parser.expression()
    if parser.token.kind != "end":
        raise parser.error("AND, OR or the end of the filter")
    return Filter(source, node)


# Tokens ------------------------------------------------------------------------------------

_SPACE = " \t\r\n\f\v"
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")
_KEY = re.compile(r"[A-Za-z0-9_-]+")  # right after "." or ":", a leading "-" is no NOT
_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
            "\\": "\\", '"': '"', "'": "'", "?": "?", "`": "`"}
_HEX_DIGITS = {"x": 2, "u": 4, "U": 8}
_KEYWORDS = ("AND", "OR", "NOT")


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "name", "string", "end", or the punctuation itself: ( ) , . : = != -
    value: str  # the name, or the string literal decoded
    position: int
    text: str  # as written, for messages


def _tokens(source: str) -> Iterator[_Token]:
    i, kind = 0, ""
    while True:
        while i < len(source) and source[i] in _SPACE:
            i += 1
        if i == len(source):
            yield _Token("end", "", i, "")
            return
        char, start = source[i], i
        name = (_KEY if kind in (".", ":") else _NAME).match(source, i)
        if char == '"':
            value, i = _string(source, i)
            kind = "string"
        elif name:
            kind, value, i = "name", name.group(), name.end()
        elif source.startswith("!=", i):
            kind, value, i = "!=", "!=", i + 2
        elif char in "().,:=-":
            kind, value, i = char, char, i + 1
        elif char == "!":
            raise FilterError("expected '!=', got '!'", i)
        elif char == "'":
            raise FilterError("string literals take double quotes, not single", i)
        else:
            raise FilterError(f"unexpected character {char!r}", i)
        yield _Token(kind, value, start, source[start:i])


def _string(source: str, start: int) -> tuple[str, int]:
    """Decode the string literal opening at ``start``; return it and the index after it."""
    out: list[str] = []
    i = start + 1
    while i < len(source):
        char = source[i]
        if char == '"':
            return "".join(out), i + 1
        if char < " " or char == "\x7f":
            raise FilterError("a control character in a string literal must be escaped", i)
        if char != "\\":
            out.append(char)
            i += 1
            continue
        kind = source[i + 1 : i + 2]
        if not kind:
            break
        if kind in _ESCAPES:
            out.append(_ESCAPES[kind])
            i += 2
            continue
        if kind in _HEX_DIGITS:
            width, base, digits = _HEX_DIGITS[kind], 16, "0123456789abcdefABCDEF"
            end = i + 2 + width
            number = source[i + 2 : end]
        elif kind in ("0", "1", "2", "3"):
            width, base, digits = 3, 8, "01234567"
            end = i + 4
            number = source[i + 1 : end]
        else:
            raise FilterError(f"unknown escape sequence '{source[i : i + 2]}'", i)
        if len(number) != width or not all(d in digits for d in number):
            what = "octal" if base == 8 else "hexadecimal"
            raise FilterError(f"'{source[i : i + 2]}' needs {width} {what} digits", i)
        code = int(number, base)
        if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
            raise FilterError(f"'{source[i:end]}' is not a Unicode character", i)
        out.append(chr(code))
        i = end
    raise FilterError("unterminated string literal", start)


# Parser ------------------------------------------------------------------------------------

class _Parser:
    """Recursive descent over tokens made on demand, so the first error is the one reported."""

    def __init__(self, source: str) -> None:
        self._tokens = _tokens(source)
        self.token = next(self._tokens)

    def _advance(self) -> _Token:
        token, self.token = self.token, next(self._tokens, self.token)
        return token

    def error(self, expected: str, after: str = "", hint: str = "") -> FilterError:
        token = self.token
        got = "the end of the filter" if token.kind == "end" else repr(token.text)
        name = token.value if token.kind == "name" else ""
        if name.upper() in _KEYWORDS and name not in _KEYWORDS:
            hint = "AND, OR and NOT are upper case"
        elif name.lower() == "hasprefix" and name != "hasPrefix":
            hint = "the function is hasPrefix"
        detail = f"expected {expected}{f' after {after}' if after else ''}, got {got}"
        return FilterError(f"{detail} ({hint})" if hint else detail, token.position)

    def _expect(self, kind: str, expected: str, after: str) -> _Token:
        if self.token.kind != kind:
            raise self.error(expected, after)
        return self._advance()

    def _operator(self) -> str:
        token = self.token
        return token.value if token.kind == "name" and token.value in ("AND", "OR") else ""

    def expression(self) -> Node:
        operands = [self.unary()]
        operator = self._operator()
        while (current := self._operator()):
            if current != operator:
                raise FilterError(f"{operator} and {current} cannot be mixed without "
                                  "parentheses", self.token.position)
            self._advance()
            operands.append(self.unary())
        if not operator:
            return operands[0]
        return And(tuple(operands)) if operator == "AND" else Or(tuple(operands))

    def unary(self) -> Node:
        negations = 0
        while self.token.kind == "-" or (self.token.kind == "name" and self.token.value == "NOT"):
            self._advance()
            negations += 1
        node = self.primary()
        for _ in range(negations):
            node = Not(node)
        return node

    def primary(self) -> Node:
        token = self.token
        if token.kind == "(":
            self._advance()
            node = self.expression()
            self._expect(")", f"')' to close the '(' at position {token.position}", "")
            return node
        if token.kind == "name" and token.value == "attributes":
            self._advance()
            if self.token.kind == ":":
                return Has(self._key(self._advance()))
            if self.token.kind != ".":
                raise self.error("'.' or ':'", "'attributes'")
            key = self._key(self._advance())
            if self.token.kind not in ("=", "!="):
                hint = "quote a key that has a '.'" if self.token.kind == "." else ""
                raise self.error("'=' or '!='", "the key", hint)
            operator = self._advance().text
            value = self._expect("string", "a string literal", f"'{operator}'").value
            return Equals(key, value) if operator == "=" else NotEquals(key, value)
        if token.kind == "name" and token.value == "hasPrefix":
            self._advance()
            self._expect("(", "'('", "'hasPrefix'")
            if not (self.token.kind == "name" and self.token.value == "attributes"):
                raise self.error("'attributes'", "'hasPrefix('")
            self._advance()
            key = self._key(self._expect(".", "'.'", "'attributes'"))
            self._expect(",", "','", "the key")
            prefix = self._expect("string", "a string literal", "','").value
            self._expect(")", "')'", "the prefix")
            return HasPrefix(key, prefix)
        raise self.error("a condition (attributes..., hasPrefix(...), NOT, '-' or '(')")

    def _key(self, after: _Token) -> str:
        if self.token.kind not in ("name", "string"):
            raise self.error("an attribute key", repr(after.text))
        return self._advance().value


# Compiling to closures ---------------------------------------------------------------------

def _everything(attributes: Mapping[str, str]) -> bool:
    return True


def _compile(node: Node) -> Match:
    match node:
        case Has(key):
            return lambda attributes: key in attributes
        case Equals(key, value) | Not(NotEquals(key, value)):
            return lambda attributes: attributes.get(key) == value
        case NotEquals(key, value) | Not(Equals(key, value)):  # true when the key is absent
            return lambda attributes: attributes.get(key) != value
        case HasPrefix(key, prefix):
            def has_prefix(attributes: Mapping[str, str]) -> bool:
                value = attributes.get(key)
                return value is not None and value.startswith(prefix)
            return has_prefix
        case Not(Not(operand)):
            return _compile(operand)
        case Not(operand):
            positive = _compile(operand)
            return lambda attributes: not positive(attributes)
        case And(operands) | Or(operands):
            # Folded from the right, so the first operand is the first and nearest call.
            join = _both if isinstance(node, And) else _either
            return functools.reduce(join, map(_compile, reversed(operands)))
    raise AssertionError(node)  # pragma: no cover - the cases above are exhaustive


def _both(rest: Match, first: Match) -> Match:
    return lambda attributes: first(attributes) and rest(attributes)


def _either(rest: Match, first: Match) -> Match:
    return lambda attributes: first(attributes) or rest(attributes)
