"""The error wrapper tells a client that went away from a database that did."""
from __future__ import annotations

import logging

import aiohttp
import pytest
from aiohttp import web

from gateway.http.errors import add_route
from gateway.metrics import METRICS


async def _gone(request: web.Request) -> web.Response:
    request.transport.close()  # as when the client resets the connection mid-download
    raise ConnectionResetError("client reset")


async def _db_down(request: web.Request) -> web.Response:
    raise ConnectionRefusedError("database refused")


@pytest.mark.parametrize("path, handler, status, db_warning", [
    ("/t/gone", _gone, "499", False),
    ("/t/db-down", _db_down, "503", True),
])
async def test_a_client_gone_is_not_a_database_outage(aiohttp_client, caplog, path, handler, status, db_warning):
    app = web.Application()
    add_route(app, "GET", path, handler)
    client = await aiohttp_client(app)
    counted = METRICS.counters["ota_gateway_http_requests"]
    before = counted.get((path, "GET", status), 0)
    caplog.set_level(logging.WARNING, logger="gateway.http.errors")
    try:
        r = await client.get(path)
        assert r.status == 503 and (await r.json())["error"]["type"] == "unavailable"
    except aiohttp.ClientConnectionError:
        assert not db_warning  # only the client that went away gets no answer
    assert counted.get((path, "GET", status), 0) == before + 1
    assert ("database unavailable" in caplog.text) == db_warning
