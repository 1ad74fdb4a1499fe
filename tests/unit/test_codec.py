import dataclasses
import datetime as dt
import enum
import json
import re
import uuid
from decimal import Decimal

import orjson
import pytest

from relay.codec import Codec
from relay.errors import DecodeError


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
