"""The device routes' fast resolver picks exactly the route and match aiohttp's resolver would."""
from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from gateway.app import init_app
from gateway.config import Settings

PATHS = [
    ("GET", "/api/v0/releases/latest/url"),
    ("GET", "/api/v0/releases/latest"),
    ("GET", "/api/v0/releases/latest/"),
    ("GET", "/api/v0/releases/latest/url/x"),
    ("GET", "/api/v0/hawkbit/default/controller/v1/D1"),
    ("GET", "/api/v0/hawkbit/default/controller/v1/dev-_01"),
    ("GET", "/api/v0/hawkbit/other/controller/v1/D1"),
    ("GET", "/api/v0/hawkbit/default/controller/v1/"),
    ("GET", "/api/v0/hawkbit//controller/v1/D1"),
    ("GET", "/api/v0/hawkbit/default/controller/v2/D1"),
    ("GET", "/api/v0/hawkbit/default/controller/v1/D1/"),
    ("GET", "/api/v0/hawkbit/default/controller/v1/D1/configData"),
    ("GET", "/api/v0/hawkbit/default/controller/v1/D1/deploymentBase/7"),
    ("GET", "/api/v0/hawkbit/default/controller/v1/D%41"),
    ("GET", "/api/v0/hawkbit/default/controller/v1/a%2Fb"),
    ("GET", "/default/controller/v1/D1"),
    ("GET", "/DEFAULT/controller/v1/D1"),
    ("GET", "/api/controller/v1/D1"),
    ("GET", "/ui/controller/v1/D1"),
    ("GET", "/default/controller/v1/D1/installedBase/3"),
    ("GET", "/metrics"),
    ("GET", "/nowhere"),
    ("HEAD", "/default/controller/v1/D1"),
    ("HEAD", "/api/v0/releases/latest/url"),
    ("POST", "/default/controller/v1/D1"),
    ("POST", "/api/v0/releases/latest/url"),
    ("PUT", "/default/controller/v1/D1/configData"),
]


@pytest.fixture(scope="module")
def app():
    return init_app(Settings(database_url="postgresql://unused"))


@pytest.mark.parametrize("method,path", PATHS)
async def test_fast_resolution_equals_aiohttps(app, method, path):
    fast = await app.router.resolve(make_mocked_request(method, path, app=app))
    slow = await web.UrlDispatcher.resolve(app.router, make_mocked_request(method, path, app=app))
    assert type(fast) is type(slow)
    assert fast.route is slow.route
    assert dict(fast) == dict(slow)
    if fast.http_exception is not None or slow.http_exception is not None:
        assert type(fast.http_exception) is type(slow.http_exception)


async def test_the_hot_routes_take_the_fast_path(app, monkeypatch):
    """A poll never reaches aiohttp's index walk (the equality test above alone would pass with
    no fast path at all)."""
    monkeypatch.setattr(app.router, "_resource_index", {})  # aiohttp's walk would now find nothing
    for path in ("/api/v0/releases/latest/url", "/api/v0/releases/latest",
                 "/api/v0/hawkbit/default/controller/v1/D1", "/t/controller/v1/D1"):
        match = await app.router.resolve(make_mocked_request("GET", path, app=app))
        assert match.route.method == "GET"
