"""Request parsing and card rendering: the same answers with orjson and with the standard library."""

from __future__ import annotations

import json
from typing import Any

import pytest

from careplan_rules.service import http
from careplan_rules.service.errors import ServiceError

ORJSON = pytest.param(True, id="orjson", marks=pytest.mark.skipif(http.orjson is None, reason="orjson not installed"))


@pytest.fixture(params=[ORJSON, pytest.param(False, id="stdlib")])
def fast(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    if not request.param:
        monkeypatch.setattr(http, "orjson", None)
    return bool(request.param)


ACCEPTED = [
    b'{"hook": "patient-view", "n": [1, -0, 2.5, 1e400, true, null]}',
    '{"name": "Kratom \u00e9\u4e2d", "text": "\\u00e9\\ud83d\\ude00"}'.encode(),
    b'\xef\xbb\xbf{"with": "byte order mark"}',  # orjson refuses it, the standard parser takes it
    b'{"big": 18446744073709551615, "small": -9223372036854775808}',  # 64 bits
    b"[0.1000000000000000055511151231257827, 3.141592653589793238462643383279, 1e-400, 2.2250738585072011e-308]",
    b'{"lone": "\\ud800"}',  # a lone surrogate escape
    b'{"dup": 1, "dup": 2}',
]


@pytest.mark.parametrize("raw", ACCEPTED)
def test_parse_json_gives_what_the_standard_parser_gives(fast: bool, raw: bytes) -> None:
    assert http.parse_json(raw) == json.loads(raw)


def test_integers_beyond_64_bits_are_read_as_decimals(fast: bool) -> None:
    value = http.parse_json(b'{"big": 123456789012345678901234567890}')["big"]
    assert value == 123456789012345678901234567890 if not fast else value == pytest.approx(1.2345678901234568e29)


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b'{"hook": ', "malformed JSON at line 1, column 10"),
        (b'{\n  "a": NaN}', "malformed JSON: NaN is not JSON"),
        (b'{"a": Infinity}', "malformed JSON: Infinity is not JSON"),
        (b"\xff\xfe{", "not UTF-8"),
        (b"[" * 100_000 + b"]" * 100_000, "malformed JSON"),
    ],
)
def test_parse_json_errors_are_the_standard_parsers(fast: bool, raw: bytes, words: str) -> None:
    with pytest.raises(ServiceError) as caught:
        http.parse_json(raw)
    assert caught.value.status == 400
    assert words in caught.value.issues[0].message


CONTENT: list[Any] = [
    {"cards": []},
    {"cards": [{"summary": 'Kratom \u00e9 \u4e2d \U0001f600 "quoted" \\ \n', "n": 3, "ok": True, "x": None}]},
    {"deep": [[[{"a": [1, 2, {"b": "c"}]}]]], "big": 2**70, 1: "int key"},
]


@pytest.mark.parametrize("content", CONTENT)
def test_render_json_writes_starlettes_bytes(fast: bool, content: Any) -> None:
    from starlette.responses import JSONResponse

    assert http.render_json(content) == JSONResponse(content).body
