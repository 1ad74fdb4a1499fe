"""The subscription filter language: what each filter matches, and what each bad one says.

The reference is Google's "Filter messages from a subscription"
(https://cloud.google.com/pubsub/docs/subscription-message-filter, "Filter
syntax"); a second table checks the same message set that Google's Go fake,
pstest, is tested with (googleapis/google-cloud-go, pubsub/pstest/filtering_test.go).
"""

from __future__ import annotations

from types import MappingProxyType

import pytest

from relay.server.filter_language import (
    MAX_FILTER_BYTES,
    And,
    Equals,
    Filter,
    FilterError,
    Has,
    HasPrefix,
    Not,
    NotEquals,
    Or,
    parse,
)

A, B, C = "attributes:a", "attributes:b", "attributes:c"


def truth(source: str, **attributes: str) -> bool:
    return parse(source).matches(attributes)


def error(source: str) -> FilterError:
    with pytest.raises(FilterError) as caught:
        parse(source)
    return caught.value


# The interface the server codes against --------------------------------------------------

def test_the_example_from_the_interface() -> None:
    f = parse('attributes.kind = "order" AND NOT hasPrefix(attributes.region, "eu-")')
    assert f.matches({"kind": "order", "region": "us-1"}) is True
    assert f.matches({"kind": "order", "region": "eu-west"}) is False
    assert f.matches({"kind": "refund", "region": "us-1"}) is False
    assert f.matches({"kind": "order"}) is True  # no region: hasPrefix is false, NOT makes it true


def test_the_empty_filter_matches_everything() -> None:
    f = parse("")
    assert f.expression is None
    assert f.matches({}) is True
    assert f.matches({"any": "thing"}) is True


def test_filter_error_is_a_value_error_with_a_position() -> None:
    caught = error("bad ===")
    assert isinstance(caught, ValueError)
    assert caught.position == 0
    assert str(caught).startswith("invalid filter at position 0: expected a condition")


def test_a_parsed_filter_is_immutable_and_compares_by_its_tree() -> None:
    f = parse(A)
    with pytest.raises(AttributeError):
        f.source = B  # type: ignore[misc]
    with pytest.raises(AttributeError):
        f.expression.key = "b"  # type: ignore[misc, union-attr]
    assert parse("attributes:a") == parse("  attributes : a ")
    assert parse(A) != parse(B)
    assert len({parse(A), parse(" attributes:a")}) == 1


def test_matches_takes_any_mapping() -> None:
    f = parse('attributes.a = "1" AND attributes:b')
    assert f.matches(MappingProxyType({"a": "1", "b": ""})) is True
    assert f.matches(MappingProxyType({"a": "1"})) is False


# Each comparison, present and missing ------------------------------------------------------

@pytest.mark.parametrize(
    ("source", "attributes", "expected"),
    [
        ('attributes.k = "v"', {"k": "v"}, True),
        ('attributes.k = "v"', {"k": "w"}, False),
        ('attributes.k = "v"', {}, False),
        ('attributes.k = "v"', {"k": "V"}, False),  # values are case-sensitive
        ('attributes.k = "v"', {"K": "v"}, False),  # and so are keys
        ('attributes.k = "v"', {"k": "v "}, False),  # exact, not trimmed
        ('attributes.k = ""', {"k": ""}, True),
        ('attributes.k = ""', {}, False),
        ('attributes.k != "v"', {"k": "w"}, True),
        ('attributes.k != "v"', {"k": "v"}, False),
        ('attributes.k != "v"', {}, True),  # "!=" is NOT "=": a missing key matches
        ('attributes.k != "v"', {"other": "v"}, True),
        ("attributes:k", {"k": "anything"}, True),
        ("attributes:k", {"k": ""}, True),
        ("attributes:k", {"kk": "x"}, False),
        ("attributes:k", {}, False),
        ('hasPrefix(attributes.k, "co")', {"k": "com"}, True),
        ('hasPrefix(attributes.k, "co")', {"k": "co"}, True),
        ('hasPrefix(attributes.k, "co")', {"k": "c"}, False),
        ('hasPrefix(attributes.k, "co")', {"k": "Com"}, False),
        ('hasPrefix(attributes.k, "co")', {"k": "xco"}, False),
        ('hasPrefix(attributes.k, "co")', {}, False),  # missing: false
        ('hasPrefix(attributes.k, "")', {"k": ""}, True),
        ('hasPrefix(attributes.k, "")', {}, False),
        ('NOT hasPrefix(attributes.k, "co")', {}, True),
        ('NOT attributes.k = "v"', {}, True),
        ('NOT attributes.k != "v"', {}, False),
        ('NOT attributes.k != "v"', {"k": "v"}, True),
    ],
)
def test_comparisons(source: str, attributes: dict[str, str], expected: bool) -> None:
    assert parse(source).matches(attributes) is expected


# Boolean operators, precedence and the AND/OR rule -----------------------------------------

@pytest.mark.parametrize(
    ("attributes", "and_", "or_"),
    [({}, False, False), ({"a": ""}, False, True), ({"b": ""}, False, True),
     ({"a": "", "b": ""}, True, True)],
)
def test_and_or(attributes: dict[str, str], and_: bool, or_: bool) -> None:
    assert parse(f"{A} AND {B}").matches(attributes) is and_
    assert parse(f"{A} OR {B}").matches(attributes) is or_


@pytest.mark.parametrize("ones", range(8))
def test_three_operands_give_the_full_truth_table(ones: int) -> None:
    attributes = {k: "" for bit, k in enumerate("abc") if ones & (1 << bit)}
    present = [k in attributes for k in "abc"]
    assert parse(f"{A} AND {B} AND {C}").matches(attributes) is all(present)
    assert parse(f"{A} OR {B} OR {C}").matches(attributes) is any(present)
    assert parse(f"{A} AND ({B} OR {C})").matches(attributes) is (
        present[0] and (present[1] or present[2]))
    assert parse(f"({A} OR {B}) AND {C}").matches(attributes) is (
        (present[0] or present[1]) and present[2])
    assert parse(f"NOT ({A} AND {B}) OR {C}").matches(attributes) is (
        not (present[0] and present[1]) or present[2])


def test_not_binds_tighter_than_and_and_or() -> None:
    assert parse(f"NOT {A} AND {B}").expression == And((Not(Has("a")), Has("b")))
    assert parse(f"NOT {A} OR {B}").expression == Or((Not(Has("a")), Has("b")))
    assert parse(f"NOT ({A} AND {B})").expression == Not(And((Has("a"), Has("b"))))
    # Where the two readings differ: a present, b absent.
    assert truth(f"NOT {A} AND {B}", a="") is False
    assert truth(f"NOT ({A} AND {B})", a="") is True


@pytest.mark.parametrize("spelling", ["NOT ", "-", "- ", "NOT\t"])
def test_minus_is_not(spelling: str) -> None:
    f = parse(f"{spelling}{A}")
    assert f.expression == Not(Has("a"))
    assert f.matches({}) is True
    assert f.matches({"a": "x"}) is False


def test_negations_stack() -> None:
    assert parse(f"NOT NOT {A}").matches({"a": ""}) is True
    assert parse(f"NOT -{A}").matches({}) is False
    assert parse(f"---{A}").matches({}) is True
    assert parse(f"NOT NOT NOT {A}").expression == Not(Not(Not(Has("a"))))


def test_parentheses_only_group() -> None:
    assert parse(f"((({A})))").expression == Has("a")
    assert parse(f"({A}) AND (NOT ({B}))").expression == And((Has("a"), Not(Has("b"))))


@pytest.mark.parametrize(
    ("source", "position", "first", "second"),
    [
        (f"{A} AND {B} OR {C}", 30, "AND", "OR"),
        (f"{A} OR {B} AND {C}", 29, "OR", "AND"),
        (f"({A} AND {B}) OR {C} AND attributes:d", 48, "OR", "AND"),
    ],
)
def test_and_and_or_cannot_be_mixed_without_parentheses(
    source: str, position: int, first: str, second: str
) -> None:
    caught = error(source)
    assert caught.position == position
    assert source[position:].startswith(second)
    assert str(caught) == (f"invalid filter at position {position}: {first} and {second} "
                           "cannot be mixed without parentheses")


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (f"({A} AND {B}) OR {C}", Or((And((Has("a"), Has("b"))), Has("c")))),
        (f"{A} AND ({B} OR {C})", And((Has("a"), Or((Has("b"), Has("c")))))),
        (f"{A} OR {B} OR {C}", Or((Has("a"), Has("b"), Has("c")))),
    ],
)
def test_parentheses_allow_mixing(source: str, expected: object) -> None:
    assert parse(source).expression == expected


@pytest.mark.parametrize(
    ("source", "position", "got"),
    [
        (f"{A} and {B}", 13, "'and'"),
        (f"{A} Or {B}", 13, "'Or'"),
        (f"not {A}", 0, "'not'"),
        (f"Not {A}", 0, "'Not'"),
    ],
)
def test_operators_are_upper_case(source: str, position: int, got: str) -> None:
    caught = error(source)
    assert caught.position == position
    assert f"got {got} (AND, OR and NOT are upper case)" in str(caught)


@pytest.mark.parametrize("spelling", ["hasprefix", "HasPrefix", "HASPREFIX"])
def test_has_prefix_is_spelled_exactly(spelling: str) -> None:
    caught = error(f'{spelling}(attributes.k, "p")')
    assert caught.position == 0
    assert str(caught).endswith(f"got '{spelling}' (the function is hasPrefix)")


def test_attributes_is_spelled_exactly_and_is_all_a_filter_can_read() -> None:
    assert error("Attributes:k").position == 0
    assert error('data = "x"').detail.endswith("got 'data'")
    assert error('message.data = "x"').position == 0


# Keys, literals and escapes -----------------------------------------------------------------

@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("attributes:ce-type", Has("ce-type")),  # hyphens need no quotes
        ("attributes:under_score9", Has("under_score9")),
        ("attributes:9lives", Has("9lives")),
        ('attributes:"iana.org/language_tag"', Has("iana.org/language_tag")),
        ('attributes."my key" = "v"', Equals("my key", "v")),
        ('attributes."a.b" != "v"', NotEquals("a.b", "v")),
        ('hasPrefix(attributes."x/y", "p")', HasPrefix("x/y", "p")),
        ('hasPrefix(attributes.ce-source, "baz/")', HasPrefix("ce-source", "baz/")),
        ('attributes:"\\u307F\\u3093\\u306A"', Has("\u307f\u3093\u306a")),
        ('attributes:"AND"', Has("AND")),
        ("attributes:AND", Has("AND")),  # a key, not the operator
    ],
)
def test_keys(source: str, expected: object) -> None:
    assert parse(source).expression == expected


@pytest.mark.parametrize(
    ("literal", "value"),
    [
        (r'"say \"hi\""', 'say "hi"'),
        (r'"back\\slash"', "back\\slash"),
        (r'"single\'quote"', "single'quote"),
        (r'"tab\tnew\nline\rcr"', "tab\tnew\nline\rcr"),
        (r'"\a\b\f\v\?\`"', "\a\b\f\v?`"),
        (r'"\x41\x7a"', "Az"),
        (r'"\u00e9\u00C9"', "éÉ"),
        (r'"\U0001F600"', "\U0001f600"),
        (r'"\101\060\377"', "A0\u00ff"),
        ('"unicode as is: été ✓"', "unicode as is: été ✓"),
        ('""', ""),
        ('"has AND and ) inside"', "has AND and ) inside"),
    ],
)
def test_string_literals_and_escapes(literal: str, value: str) -> None:
    f = parse(f"attributes.k = {literal}")
    assert f.expression == Equals("k", value)
    assert f.matches({"k": value}) is True


@pytest.mark.parametrize(
    ("literal", "offset", "detail"),
    [
        (r'"\q"', 1, "unknown escape sequence '\\q'"),
        (r'"\x4"', 1, "'\\x' needs 2 hexadecimal digits"),
        (r'"\x4g"', 1, "'\\x' needs 2 hexadecimal digits"),
        (r'"\u12G4"', 1, "'\\u' needs 4 hexadecimal digits"),
        (r'"\U0011FFFF"', 1, "'\\U0011FFFF' is not a Unicode character"),
        (r'"\uD800"', 1, "'\\uD800' is not a Unicode character"),
        (r'"\18"', 1, "'\\1' needs 3 octal digits"),
        (r'"\400"', 1, "unknown escape sequence '\\4'"),
        ('"ab', 0, "unterminated string literal"),
        ('"ends in a backslash\\', 0, "unterminated string literal"),
        ('"raw\nnewline"', 4, "a control character in a string literal must be escaped"),
        ("'single'", 0, "string literals take double quotes, not single"),
    ],
)
def test_bad_string_literals(literal: str, offset: int, detail: str) -> None:
    prefix = "attributes.k = "
    caught = error(prefix + literal)
    assert caught.position == len(prefix) + offset
    assert caught.detail == detail


@pytest.mark.parametrize(
    "source",
    [
        'attributes.k="v"AND attributes:j',
        '\n\tattributes . k\t=\r\n"v"   AND\n attributes :j  ',
        '(attributes.k="v")AND(attributes:j)',
        'attributes.k = "v" AND hasPrefix ( attributes . j , "" )',
    ],
)
def test_whitespace_is_free_between_tokens(source: str) -> None:
    f = parse(source)
    assert f.matches({"k": "v", "j": ""}) is True
    assert f.matches({"k": "v"}) is False


# Limits -------------------------------------------------------------------------------------

def _padded(size: int) -> str:
    """An ``attributes.k = "..."`` filter of exactly ``size`` bytes."""
    head = 'attributes.k = "'
    return head + "x" * (size - len(head) - 1) + '"'


def test_a_filter_of_256_bytes_is_accepted_and_257_is_not() -> None:
    assert MAX_FILTER_BYTES == 256
    assert parse(_padded(256)).matches({"k": "x" * 239}) is True
    caught = error(_padded(257))
    assert caught.position is None
    assert str(caught) == "invalid filter: it is 257 bytes long; the limit is 256 bytes"


def test_the_limit_counts_utf8_bytes_not_characters() -> None:
    source = 'attributes.k = "' + "é" * 120 + '"'  # 137 characters, 257 bytes
    assert len(source) < 256
    assert error(source).detail == "it is 257 bytes long; the limit is 256 bytes"
    assert parse(source[:-2] + '"').expression == Equals("k", "é" * 119)


def test_the_deepest_nesting_that_fits_parses_and_matches() -> None:
    depth = (MAX_FILTER_BYTES - len(A)) // 2
    nested = "(" * depth + A + ")" * depth
    assert parse(nested).matches({"a": ""}) is True
    negated = "-" * (MAX_FILTER_BYTES - len(A)) + A  # 244 NOTs: an even number
    assert parse(negated).matches({"a": ""}) is True
    assert parse(negated[1:]).matches({"a": ""}) is False


def test_the_most_operands_that_fit() -> None:
    source = " OR ".join(f"attributes:k{i}" for i in range(15))
    assert len(source) == MAX_FILTER_BYTES
    f = parse(source)
    assert f.matches({"k14": ""}) is True
    assert f.matches({"k15": ""}) is False
    every = {f"k{i}": "" for i in range(14)}
    conjunction = parse(" AND ".join(f"attributes:{key}" for key in every))  # 250 bytes
    assert conjunction.matches(every) is True
    assert conjunction.matches({k: v for k, v in every.items() if k != "k7"}) is False


# Syntax errors: where, and what was expected ------------------------------------------------

@pytest.mark.parametrize(
    ("source", "position", "detail"),
    [
        ("bad ===", 0, "expected a condition (attributes..., hasPrefix(...), NOT, '-' or '('), "
                       "got 'bad'"),
        ('attributes.k = = "v"', 15, "expected a string literal after '=', got '='"),
        ('attributes.k == "v"', 14, "expected a string literal after '=', got '='"),
        ("attributes.k = v", 15, "expected a string literal after '=', got 'v'"),
        ("attributes.k !=", 15, "expected a string literal after '!=', got the end of the filter"),
        ('attributes.k "v"', 13, "expected '=' or '!=' after the key, got '\"v\"'"),
        ("attributes.k", 12, "expected '=' or '!=' after the key, got the end of the filter"),
        ('attributes.a.b = "v"', 12,
         "expected '=' or '!=' after the key, got '.' (quote a key that has a '.')"),
        ('attributes:k = "v"', 13, "expected AND, OR or the end of the filter, got '='"),
        ("attributes", 10, "expected '.' or ':' after 'attributes', got the end of the filter"),
        ('attributes = "v"', 11, "expected '.' or ':' after 'attributes', got '='"),
        ("attributes.", 11, "expected an attribute key after '.', got the end of the filter"),
        ("attributes:(", 11, "expected an attribute key after ':', got '('"),
        ('attributes.k ! "v"', 13, "expected '!=', got '!'"),
        ('attributes.k = "v" & attributes:j', 19, "unexpected character '&'"),
        ("attributes:k AND", 16,
         "expected a condition (attributes..., hasPrefix(...), NOT, '-' or '('), "
         "got the end of the filter"),
        ("attributes:k AND AND attributes:j", 17,
         "expected a condition (attributes..., hasPrefix(...), NOT, '-' or '('), got 'AND'"),
        ("NOT", 3, "expected a condition (attributes..., hasPrefix(...), NOT, '-' or '('), "
                   "got the end of the filter"),
        ("()", 1, "expected a condition (attributes..., hasPrefix(...), NOT, '-' or '('), "
                  "got ')'"),
        ("(attributes:k", 13,
         "expected ')' to close the '(' at position 0, got the end of the filter"),
        ("attributes:k)", 12, "expected AND, OR or the end of the filter, got ')'"),
        ("attributes:k attributes:j", 13,
         "expected AND, OR or the end of the filter, got 'attributes'"),
        ('hasPrefix attributes.k, "p")', 10, "expected '(' after 'hasPrefix', got 'attributes'"),
        ('hasPrefix("p", attributes.k)', 10,
         "expected 'attributes' after 'hasPrefix(', got '\"p\"'"),
        ('hasPrefix(attributes:k, "p")', 20, "expected '.' after 'attributes', got ':'"),
        ("hasPrefix(attributes.k)", 22, "expected ',' after the key, got ')'"),
        ("hasPrefix(attributes.k, p)", 24, "expected a string literal after ',', got 'p'"),
        ('hasPrefix(attributes.k, "p"', 27,
         "expected ')' after the prefix, got the end of the filter"),
        ('hasPrefix(attributes.k, "p", "q")', 27, "expected ')' after the prefix, got ','"),
        ("   ", 0, "it is blank; the empty string is the filter that matches all"),
    ],
)
def test_syntax_errors(source: str, position: int, detail: str) -> None:
    caught = error(source)
    assert (caught.position, caught.detail) == (position, detail)
    assert str(caught) == f"invalid filter at position {position}: {detail}"


def test_the_first_error_in_the_text_is_the_one_reported() -> None:
    # A later unterminated string does not hide the earlier missing operator.
    assert error('attributes.k = = "unterminated').position == 15


# Google's examples ---------------------------------------------------------------------------

# The table of filters on the `name` attribute, and the examples in "Comparison
# operators", "Boolean operators" and "Functions for the filter expression" of
# https://cloud.google.com/pubsub/docs/subscription-message-filter.
COM, NET, CO, NONE = {"name": "com"}, {"name": "net"}, {"name": "co"}, {"other": "com"}
TAGGED = {"iana.org/language_tag": "en", "name": "net"}
TAGGED_COM = {"iana.org/language_tag": "en", "name": "com"}


@pytest.mark.parametrize(
    ("source", "matching"),
    [
        ("attributes:name", [COM, NET, CO, TAGGED, TAGGED_COM]),
        ("NOT attributes:name", [NONE]),
        ('attributes.name = "com"', [COM, TAGGED_COM]),
        ('attributes.name != "com"', [NET, CO, NONE, TAGGED]),
        ('hasPrefix(attributes.name, "co")', [COM, CO, TAGGED_COM]),
        ('NOT hasPrefix(attributes.name, "co")', [NET, NONE, TAGGED]),
        ('attributes:"iana.org/language_tag"', [TAGGED, TAGGED_COM]),
        ('attributes:"iana.org/language_tag" AND NOT attributes.name = "com"', [TAGGED]),
        ('attributes.name = "com" AND -attributes:"iana.org/language_tag"', [COM]),
        ('attributes.name = "com" OR attributes.name = "net"', [COM, NET, TAGGED, TAGGED_COM]),
        ('attributes:"iana.org/language_tag" AND (attributes.name = "net" OR '
         'attributes.name = "org")', [TAGGED]),
    ],
)
def test_googles_documented_examples(source: str, matching: list[dict[str, str]]) -> None:
    f = parse(source)
    for attributes in (COM, NET, CO, NONE, TAGGED, TAGGED_COM):
        assert f.matches(attributes) is (attributes in matching), attributes


def test_googles_unsupported_mix_is_refused() -> None:
    # The same page: combining AND and OR needs parentheses.
    with pytest.raises(FilterError, match="AND and OR cannot be mixed without parentheses"):
        parse('attributes:"iana.org/language_tag" AND attributes.name = "net" OR '
              'attributes.name = "org"')


# The message set pstest is tested with (google-cloud-go pubsub/pstest/filtering_test.go),
# with the ids each filter must keep: Google's own fake agrees on every row.
PSTEST = {
    1: {"lang": "en", "name": "com", "timezone": "UTC"},
    2: {"lang": "en", "name": "net", "timezone": "UTC"},
    3: {"lang": "en", "name": "org", "timezone": "UTC"},
    4: {"lang": "cn", "name": "com", "timezone": "UTC"},
    5: {"lang": "cn", "name": "net", "timezone": "UTC"},
    6: {"lang": "cn", "name": "org", "timezone": "UTC"},
    7: {"lang": "jp", "name": "co", "timezone": "UTC"},
    8: {"lang": "jp", "timezone": "UTC"},
    9: {"name": "com", "timezone": "UTC"},
    10: {"lang": "jp", "\u307f\u3093\u306a": "dummy1"},
    11: {"\u307f\u3093\u306a": "dummy2"},
    12: {"name": "com", "\u307f\u3093\u306a": "dummy3"},
}


@pytest.mark.parametrize(
    ("source", "kept"),
    [
        ('attributes.name = "com"', {1, 4, 9, 12}),
        ('attributes.name != "com"', {2, 3, 5, 6, 7, 8, 10, 11}),
        ('hasPrefix(attributes.name, "co")', {1, 4, 7, 9, 12}),
        ("attributes:name", {1, 2, 3, 4, 5, 6, 7, 9, 12}),
        ("NOT attributes:name", {8, 10, 11}),
        ('(NOT attributes:name) OR attributes.name = "co"', {7, 8, 10, 11}),
        ('NOT (attributes:name OR attributes.lang = "jp")', {11}),
        ('attributes.name = "com" AND -attributes:"lang"', {9, 12}),
        ('attributes:"\\u307F\\u3093\\u306A"', {10, 11, 12}),
    ],
)
def test_the_pstest_table(source: str, kept: set[int]) -> None:
    f = parse(source)
    assert {i for i, attributes in PSTEST.items() if f.matches(attributes)} == kept


def test_filter_is_the_parsed_type() -> None:
    assert isinstance(parse(A), Filter)
    assert repr(parse(A)).startswith("Filter(source='attributes:a'")
