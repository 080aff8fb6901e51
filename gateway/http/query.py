"""Query parameters of a device request, read without yarl's decoding when none is needed."""
from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

_EMPTY: Mapping[str, str] = {}


def query_params(request: web.Request) -> Mapping[str, str]:
    """The first value of each query parameter, as `request.query` would give it.

    Devices send plain ASCII queries (serials, versions, hardware names); those are split straight
    from the request target, which costs a third of building yarl's MultiDict. Anything that
    needs decoding (`%`, `+`) or is unusual (`#`) goes through `request.query` unchanged."""
    raw = request.raw_path
    i = raw.find("?")
    if i < 0:
        return _EMPTY
    qs = raw[i + 1:]
    if "%" in qs or "+" in qs or "#" in qs or not qs.isascii():
        return request.query
    out: dict[str, str] = {}
    for part in qs.split("&"):
        if part:
            k, _, v = part.partition("=")
            if k not in out:
                out[k] = v
    return out
