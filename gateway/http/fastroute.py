"""Route resolution for the hot device routes without walking aiohttp's route index.

aiohttp resolves `/api/v0/hawkbit/default/controller/v1/D1` by looking up every shorter prefix of
the path in its index (a new string and a dict miss each) and then trying, in registration
order, the regular expression of each resource filed under the prefix that matches: about a
tenth of a DDI base poll's CPU. A route given here is matched by splitting the path once and
comparing its literal segments; anything it does not recognise, or that carries percent-escapes,
goes through aiohttp's resolver as before, and `tests/test_fastroute.py` checks that both give
the same route and match for every path shape.
"""
from __future__ import annotations

from aiohttp import web
from aiohttp.web_urldispatcher import (
    DynamicResource,
    PlainResource,
    ResourceRoute,
    UrlMappingMatchInfo,
)

from gateway.http import compat
from gateway.http.compat import index_key


class _Shape:
    """One route's path as segments (literal strings and `{name}` variables), with the longer
    index keys of other resources that aiohttp would try first on a path of this shape."""

    __slots__ = ("length", "literals", "variables", "route", "shadows", "depths")

    def __init__(self, path: str, route: ResourceRoute, index_keys):
        parts = path.split("/")
        self.length = len(parts)
        self.literals = tuple((i, p) for i, p in enumerate(parts) if not p.startswith("{"))
        self.variables = tuple((i, p[1:-1]) for i, p in enumerate(parts) if p.startswith("{"))
        self.route = route
        own = index_key(route.resource.canonical)
        # e.g. `/ui` for `/{tenant}/controller/v1/{controllerId}`: `/ui/controller/v1/x` is the dashboard's
        self.shadows = {k for k in index_keys if len(k) > len(own) and self._could_prefix(k.split("/"), parts)}
        self.depths = sorted({k.count("/") + 1 for k in self.shadows})

    @staticmethod
    def _could_prefix(key: list[str], parts: list[str]) -> bool:
        return len(key) <= len(parts) and all(p.startswith("{") or p == k for k, p in zip(key, parts))

    def match(self, parts: list[str]) -> dict[str, str] | None:
        if len(parts) != self.length:
            return None
        for i, lit in self.literals:
            if parts[i] != lit:
                return None
        found = {}
        for i, name in self.variables:
            value = parts[i]
            if not value:
                return None
            found[name] = value
        for d in self.depths:
            if "/".join(parts[:d]) in self.shadows:
                return None
        return found


def install(app: web.Application, method: str, paths: list[str]) -> None:
    """Resolve `method` requests for these registered paths (literal, or with plain `{name}`
    variables) by segment comparison, before aiohttp's own resolver. Call after the routes are added
    and after `compat.check(app)`, which turns this off when aiohttp's internals are not as expected."""
    if not compat.fast_routes:
        return  # keep aiohttp's resolver
    index = app.router._resource_index  # aiohttp's prefix -> resources, in order (compat checks it)
    shapes: list[_Shape] = []
    for path in paths:
        if any("{" in p[1:] or ":" in p for p in path.split("/") if p.startswith("{")):
            raise ValueError(f"only plain {{name}} variables can be fast-routed: {path}")
        resource = next(r for r in app.router.resources()
                        if isinstance(r, (DynamicResource, PlainResource)) and r.canonical == path)
        route = next(r for r in resource if r.method == method)
        shape = _Shape(path, route, index)
        if resource not in index.get(index_key(path), [resource])[:1]:
            raise ValueError(f"{path} is not the first resource aiohttp tries for its paths")
        shapes.append(shape)
    slow = app.router.resolve

    async def resolve(request: web.Request):
        if request.method == method:
            path = request.rel_url.raw_path
            if "%" not in path:
                parts = path.split("/")
                for shape in shapes:
                    found = shape.match(parts)
                    if found is not None:
                        return UrlMappingMatchInfo(found, shape.route)
        return await slow(request)

    # the application calls `router.resolve(request)`; an instance attribute takes precedence
    app.router.resolve = resolve  # type: ignore[method-assign]
