import dataclasses
import datetime as dt
import enum
import json
import re
import uuid
from decimal import Decimal
from typing import Any

import orjson
import pytest

from relay.codec import Codec, EncodeError
from relay.errors import DecodeError, RelayError


class Color(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Point:
    x: int
    y: int


def roundtrip(data: object, encoder: object = None) -> object:
    return orjson.loads(Codec(encoder).encode(data))


def test_builtin_types() -> None:
    when = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    uid = uuid.UUID("12345678-1234-5678-1234-567812345678")
    out = roundtrip(
        {
            "when": when,
            "day": dt.date(2024, 1, 2),
            "id": uid,
            "price": Decimal("10.10"),
            "point": Point(1, 2),
            "color": Color.RED,
            "tags": {"a"},
            1: "int key",
        }
    )
    assert out == {
        "when": "2024-01-02T03:04:05+00:00",
        "day": "2024-01-02",
        "id": str(uid),
        "price": "10.10",
        "point": {"x": 1, "y": 2},
        "color": "red",
        "tags": ["a"],
        "1": "int key",
    }


class Money:
    def __init__(self, cents: int) -> None:
        self.cents = cents


def test_unknown_type_error_names_the_type_and_the_fix() -> None:
    with pytest.raises(TypeError, match=r"relay cannot encode Money.*ENCODER"):
        Codec().encode({"m": Money(5)})


def test_custom_encoder_callable() -> None:
    assert roundtrip({"m": Money(5)}, lambda o: {"cents": o.cents}) == {"m": {"cents": 5}}


def test_custom_encoder_json_encoder_subclass_like_rele() -> None:
    class Enc(json.JSONEncoder):
        def default(self, o: object) -> object:
            if isinstance(o, Money):
                return o.cents
            return super().default(o)

    assert roundtrip([Money(7)], Enc) == [7]
    # Decimal is still handled by relay first
    assert roundtrip([Decimal("1.5")], Enc) == ["1.5"]


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        (b"not json", "not valid JSON"),
        (b'{"a": ', "not valid JSON"),
        (b"", "payload is empty, not JSON"),
        (b"\xff\xfe", "not UTF-8 (byte 0xff at offset 0)"),
        (b'{"a": "\xc3"}', "not UTF-8 (byte 0xc3 at offset 7)"),
    ],
)
def test_decode_errors(payload: bytes, fragment: str) -> None:
    with pytest.raises(DecodeError, match=re.escape(fragment)):
        Codec.decode(payload)


def test_decode() -> None:
    assert Codec.decode(b'{"a": [1, 2.5, null]}') == {"a": [1, 2.5, None]}


# --- values orjson would change silently or refuse unclearly (issue 9) ---


@dataclasses.dataclass
class Reading:
    sensor: str
    value: float


class Level(enum.Enum):
    UNKNOWN = float("nan")


def refusal(data: object, encoder: object = None) -> str:
    with pytest.raises(EncodeError) as info:
        Codec(encoder).encode(data)
    return str(info.value)


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (float("nan"), "float('nan')"),
        (float("inf"), "float('inf')"),
        (float("-inf"), "float('-inf')"),
    ],
    ids=["nan", "inf", "-inf"],
)
@pytest.mark.parametrize(
    ("make", "path"),
    [
        (lambda v: v, "data"),
        (lambda v: {"readings": [1.0, 2.0, 3.0, v]}, "data['readings'][3]"),
        (lambda v: [{"a": {"b": (0, v)}}], "data[0]['a']['b'][1]"),
        (lambda v: {"r": Reading("t1", v)}, "data['r'].value"),
        (lambda v: {2: {"x": v}}, "data[2]['x']"),
    ],
    ids=["top-level", "in-a-list", "in-a-tuple", "in-a-dataclass", "under-an-int-key"],
)
def test_nan_and_infinity_are_refused_naming_the_path_and_the_fix(
    value: float, shown: str, make: Any, path: str
) -> None:
    message = refusal(make(value))
    assert f"relay cannot encode {shown} at {path}: JSON has no NaN or infinity" in message
    assert "use None, or a string" in message


def test_nan_hidden_in_an_enum_a_dict_key_or_an_encoder_result_is_refused() -> None:
    assert "float('nan') at data['level']" in refusal({"level": Level.UNKNOWN})
    assert "the key float('inf') of the dict at data['m']" in refusal({"m": {float("inf"): 1}})
    assert "float('nan') at data['total']" in refusal(
        {"total": Money(5)}, lambda o: float("nan")
    )
    assert "inside the set at data['tags']" in refusal({"tags": {1.0, float("nan")}})


def test_none_and_the_text_null_still_encode_unchanged() -> None:
    data = {
        "a": None,
        "b": "null",
        "null": [None, "nullable", "x null y", 1.5],
        "r": Reading("null", 0.0),
    }
    assert orjson.loads(Codec().encode(data)) == {
        "a": None,
        "b": "null",
        "null": [None, "nullable", "x null y", 1.5],
        "r": {"sensor": "null", "value": 0.0},
    }
    assert Codec().encode(None) == b"null"
    # Beside a None, what takes relay a closer look is still sent as it always was.
    assert roundtrip(
        [None, {1.5: "float key"}, Decimal("NaN"), Color.RED, {"tags": {2.5}}, Point(1, 2)]
    ) == [None, {"1.5": "float key"}, "NaN", "red", {"tags": [2.5]}, {"x": 1, "y": 2}]


def test_data_as_deep_as_orjson_allows_still_encodes_with_a_null_inside() -> None:
    data: object = None
    for _ in range(254):
        data = [data]
    assert Codec().encode(data) == b"[" * 254 + b"null" + b"]" * 254


def test_data_that_contains_itself_is_refused_naming_where() -> None:
    loop: list[object] = [1]
    loop.append({"back": loop})
    message = refusal({"loop": loop})
    assert message.startswith("relay cannot encode a ")
    assert " at data['loop'][1]['back'][1]['back'][1]" in message
    assert "nested more than 254 levels deep" in message
    assert "contain itself" in message


def test_non_utf8_bytes_name_the_path_and_base64() -> None:
    message = refusal({"files": [{"name": "a.bin", "body": b"\xff\x00"}]})
    assert message.startswith("relay cannot encode bytes at data['files'][0]['body']:")
    assert "not UTF-8 (byte 0xff at offset 0)" in message
    assert "base64.b64encode(value).decode()" in message
    # UTF-8 bytes are still sent as text
    assert roundtrip({"b": "é".encode(), "m": memoryview(b"ok")}) == {"b": "é", "m": "ok"}


@pytest.mark.parametrize("value", [2**64, -(2**63) - 1])
def test_integers_beyond_64_bits_name_the_path_and_the_value(value: int) -> None:
    message = refusal({"order": {"ids": [1, value]}})
    where = "at data['order']['ids'][1]:"
    assert message.startswith(f"relay cannot encode the integer {value} {where}")
    assert "64 bits" in message
    assert "pass it as a string" in message


def test_integer_limits_and_huge_integers() -> None:
    assert roundtrip([2**64 - 1, -(2**63)]) == [2**64 - 1, -(2**63)]
    # Too many digits for str(): the message gives the size instead of failing itself.
    assert "an integer of 16610 bits at data" in refusal(10**5000)
    assert "the key (the integer 18446744073709551616) of the dict at data" in refusal(
        {2**64: "x"}
    )


def test_unknown_types_and_encoder_errors_name_the_path() -> None:
    message = refusal({"lines": [{"price": Money(5)}]})
    assert message.startswith("relay cannot encode Money <")
    assert "at data['lines'][0]['price']: convert it before publishing" in message

    def strict(obj: object) -> object:
        raise TypeError(f"no rule for {type(obj).__name__}")

    message = refusal({"m": Money(5)}, strict)
    assert "at data['m']: the ENCODER setting raised TypeError: no rule for Money" in message
    assert "key (1, 2) of the dict at data" in refusal({(1, 2): "tuple key"})


def test_encode_error_is_a_relay_error_and_a_type_error() -> None:
    # publish() has always raised TypeError for data it cannot encode: keep that contract.
    assert issubclass(EncodeError, TypeError) and issubclass(EncodeError, RelayError)
