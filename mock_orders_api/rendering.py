"""JSON rendering of the mock's responses.

`dumps` renders exactly as Starlette's `JSONResponse` does (compact separators, UTF-8, no
`ensure_ascii`, NaN and infinities refused) with one shared encoder instead of one built per
response. `dumps_object` renders a float-free dict whose top-level values may be `Raw`: JSON
rendered before (an order's invoice packages and finished Changes, kept: domain/model.py), spliced
in as it is, so its output is byte for byte `dumps` of the same dict with those values parsed back.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

_ENCODE = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode


class Raw:
    """A JSON value already rendered by `dumps`."""

    __slots__ = ("json",)

    def __init__(self, rendered: bytes) -> None:
        self.json = rendered


def dumps(content: Any) -> bytes:
    return _ENCODE(content).encode("utf-8")


def dumps_object(content: dict[str, Any]) -> bytes:
    """`dumps(content)` with its `Raw` top-level values spliced in as they are.

    The other values must hold no float: they are rendered by orjson, whose output equals the
    standard encoder's for strings, ints, bools, None, lists and dicts but not for floats
    (`1e+16` vs `1e16`); what orjson refuses (ints beyond 64 bits, lone surrogates) goes
    through `dumps`, which renders or refuses it as before."""
    try:
        return orjson.dumps(content, default=_fragment)
    except TypeError:  # orjson.JSONEncodeError
        pass
    parts: list[bytes] = []
    plain: dict[str, Any] = {}
    for key, value in content.items():
        if isinstance(value, Raw):
            if plain:
                parts.append(dumps(plain)[1:-1])
                plain = {}
            parts.append(dumps(key) + b":" + value.json)
        else:
            plain[key] = value
    if plain:
        parts.append(dumps(plain)[1:-1])
    return b"{" + b",".join(parts) + b"}"


def _fragment(value: Any) -> orjson.Fragment:
    if isinstance(value, Raw):
        return orjson.Fragment(value.json)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
