import pytest

from relay.errors import ConfigurationError
from relay.limits import (
    MAX_PAYLOAD_BYTES,
    validate_attributes,
    validate_name,
    validate_payload,
)


@pytest.mark.parametrize("name", ["abc", "orders.v1", "a-b_c~d%e+f", "A" * 255])
def test_valid_names_pass(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("ab", "3 to 255"),
        ("a" * 256, "3 to 255"),
        ("1orders", "start with a letter"),
        ("-orders", "start with a letter"),
        ("google-things", "goog"),
        ("GOOGthings", "goog"),
        ("orders/v1", "'/'"),
        ("ord ers", "' '"),
        ("ordér", "'é'"),
    ],
)
def test_invalid_names_name_the_value_and_the_rule(name: str, fragment: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        validate_name(name, "subscription")
    message = str(info.value)
    assert repr(name) in message
    assert fragment in message
    assert "subscription" in message


def test_non_string_name() -> None:
    with pytest.raises(ConfigurationError, match="must be a string"):
        validate_name(42)


def test_attribute_values_must_be_strings() -> None:
    with pytest.raises(ConfigurationError, match=r"attribute 'count' has value 3 of type int"):
        validate_attributes({"count": 3})  # type: ignore[dict-item]


def test_too_many_attributes() -> None:
    with pytest.raises(ConfigurationError) as info:
        validate_attributes({f"k{i}": "v" for i in range(101)})
    assert str(info.value) == (
        "a message has 101 attributes; Pub/Sub allows at most 100: remove 1, "
        "or put their values in the data"
    )
    validate_attributes({f"k{i}": "v" for i in range(100)})


def test_too_many_attributes_counts_the_callers_own_apart_from_those_added_for_it() -> None:
    attributes = {f"k{i}": "v" for i in range(100)}
    attributes["published_at"] = "1.0"
    attributes["trace_id"] = "t"
    attributes["span_id"] = "s"
    with pytest.raises(ConfigurationError) as info:
        validate_attributes(
            attributes,
            added={"published_at": "relay", "trace_id": "middleware", "span_id": "middleware"},
        )
    assert str(info.value) == (
        "a message has 103 attributes: 100 of yours and 3 added for you (published_at by "
        "relay; trace_id, span_id by middleware); Pub/Sub allows at most 100 in all, so at "
        "most 97 of yours: remove 3 of yours, or put their values in the data"
    )
    # ``added`` only explains the count; it grants no extra room.
    del attributes["k0"], attributes["k1"], attributes["k2"]
    validate_attributes(attributes, added={"published_at": "relay"})


def test_attribute_key_and_value_sizes() -> None:
    validate_attributes({"k" * 256: "v" * 1024})
    with pytest.raises(ConfigurationError, match="257 bytes; the limit is 256"):
        validate_attributes({"k" * 257: "v"})
    with pytest.raises(ConfigurationError, match="'big' is 1025 bytes; the limit is 1024"):
        validate_attributes({"big": "v" * 1025})
    # bytes, not characters
    with pytest.raises(ConfigurationError, match="'big' is 1026 bytes"):
        validate_attributes({"big": "é" * 513})


def test_empty_attribute_key() -> None:
    with pytest.raises(ConfigurationError, match="non-empty string"):
        validate_attributes({"": "v"})


def test_payload_limit() -> None:
    validate_payload("orders", b"x" * MAX_PAYLOAD_BYTES)
    with pytest.raises(ConfigurationError, match="'orders' encodes to 10485761 bytes"):
        validate_payload("orders", b"x" * (MAX_PAYLOAD_BYTES + 1))


def test_attributes_added_for_the_caller_alone_over_the_limit_say_so() -> None:
    attributes = {f"m{i}": "v" for i in range(101)}
    attributes["mine"] = "v"
    with pytest.raises(ConfigurationError) as info:
        validate_attributes(attributes, added={f"m{i}": "middleware" for i in range(101)})
    assert str(info.value) == (
        "a message has 102 attributes: 1 of yours and 101 added for you (m0, m1, m2, m3, m4 "
        "and 96 more by middleware); Pub/Sub allows at most 100 in all, and those added for "
        "you alone are over it: check what adds them"
    )
