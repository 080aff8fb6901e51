"""The one reader of JSON request bodies (management API and DDI devices alike).

orjson parses what it can, fast. What it refuses is not always invalid JSON: RFC 8259 numbers
have no size limit (`10**400`), and SWUpdate writes raw newlines into strings. Those go through
the standard library parser with hooks that keep such numbers (and NaN / Infinity, which are not
JSON at all) as markers, so that the walk that follows can refuse them naming the field they sit
in. The walk also bounds nesting, which both parsers would otherwise take to their recursion
limits (orjson refuses past 1024 levels; the standard library raises RecursionError)."""
from __future__ import annotations

import json
from typing import Any

import orjson

from gateway.domain.errors import BadRequest

MAX_DEPTH = 32  # every body this gateway reads is a few levels deep
_MAX_INT_DIGITS = 20  # past int64 / uint64 no field can hold it


class _Unrepresentable:
    """A number the request holds that no field can take (too large, or not finite)."""
    __slots__ = ("text",)

    def __init__(self, text: str):
        self.text = text


def _int(text: str):
    return int(text) if len(text.lstrip("-")) <= _MAX_INT_DIGITS else _Unrepresentable(text)


def _float(text: str):
    value = float(text)
    return value if value not in (float("inf"), float("-inf")) else _Unrepresentable(text)


def _stdlib(raw: bytes, lenient: bool) -> Any:
    """The standard library's reading of a body orjson refused, or BadRequest."""
    text = raw.decode("utf-8", "replace") if lenient else raw.decode("utf-8")
    try:
        return json.loads(text, strict=not lenient, parse_int=_int, parse_float=_float,
                          parse_constant=_Unrepresentable)
    except RecursionError:
        raise BadRequest(f"request body is nested more than {MAX_DEPTH} levels deep") from None
    except ValueError as e:
        raise BadRequest(f"request body is not valid JSON: {str(e)[:120]}") from None


def parse_json(raw: bytes, *, lenient: bool = False, refuse_nul: bool = False) -> Any:
    """The JSON document in `raw` (UTF-8), checked by `check_document`. `lenient` also takes
    control characters inside strings (device firmware builds bodies with printf); `refuse_nul`
    refuses NUL in any string (PostgreSQL text cannot hold it). 400 naming the field otherwise."""
    try:
        return check_document(orjson.loads(raw), refuse_nul=refuse_nul)
    except orjson.JSONDecodeError as e:
        first_error = str(e)
    if "depth limit" in first_error:
        raise BadRequest(f"request body is nested more than {MAX_DEPTH} levels deep")
    doc = check_document(_stdlib(raw, lenient), refuse_nul=refuse_nul, surrogates=True)
    if not lenient:
        # strict bodies take the standard library's reading only to name the field of a number
        # no field can hold (refused above); whatever else orjson refused stays refused
        raise BadRequest(f"request body is not valid JSON: {first_error[:120]}")
    return doc


def _name(path: str, key: str) -> str:
    return f"{path}.{key[:64]}" if path else key[:64]


def check_document(value: Any, *, refuse_nul: bool = False, surrogates: bool = False, path: str = "",
                   depth: int = 0) -> Any:
    """`value` unchanged, or BadRequest naming the field that is nested too deep, holds a number
    out of range or not finite, a NUL (when `refuse_nul`) or an unpaired surrogate (when
    `surrogates`: only the standard library parser lets those through)."""
    label = path[:120] or "request body"
    if depth > MAX_DEPTH:
        raise BadRequest(f"{label} is nested more than {MAX_DEPTH} levels deep")
    if isinstance(value, str):
        if refuse_nul and "\x00" in value:
            raise BadRequest(f"{label} contains a NUL character")
        if surrogates and not _encodable(value):
            raise BadRequest(f"{label} holds an unpaired surrogate escape, which is not valid JSON text")
    elif isinstance(value, _Unrepresentable):
        raise BadRequest(f"{label} is a number out of range or not finite ({value.text[:24]})")
    elif isinstance(value, dict):
        for k, v in value.items():
            if refuse_nul and "\x00" in k:
                raise BadRequest(f"{label} has a key containing a NUL character")
            if surrogates and not _encodable(k):
                raise BadRequest(f"{label} has a key with an unpaired surrogate escape (not valid JSON text)")
            check_document(v, refuse_nul=refuse_nul, surrogates=surrogates, path=_name(path, k), depth=depth + 1)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            check_document(v, refuse_nul=refuse_nul, surrogates=surrogates, path=f"{path}[{i}]", depth=depth + 1)
    return value


def _encodable(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
