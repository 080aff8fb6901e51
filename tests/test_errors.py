"""The error wrapper tells a client that went away from a database that did, and both from the
artifact store's disk."""
from __future__ import annotations

import errno
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
    caplog.set_level(logging.WARNING)
    try:
        r = await client.get(path)
        assert r.status == 503 and (await r.json())["error"]["type"] == "unavailable"
    except aiohttp.ClientConnectionError:
        assert not db_warning  # only the client that went away gets no answer
    assert counted.get((path, "GET", status), 0) == before + 1
    assert ("database unavailable" in caplog.text) == db_warning
    # a client gone is nobody's error: no stack trace, no error line (aiohttp's own logger too)
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR], caplog.text


async def _missing_file(request: web.Request) -> web.Response:
    open("/nonexistent-ota-dir/blob", "rb")  # noqa: SIM115 - raises FileNotFoundError (with a filename)


async def _disk_full(request: web.Request) -> web.Response:
    raise OSError(errno.ENOSPC, "No space left on device", "/data/artifacts/tmp")


@pytest.mark.parametrize("handler, status, kind", [(_missing_file, 500, "storage_failed"),
                                                   (_disk_full, 507, "insufficient_storage")])
async def test_a_file_system_error_is_not_a_database_outage(aiohttp_client, caplog, handler, status, kind):
    app = web.Application()
    add_route(app, "GET", "/t/disk", handler)
    client = await aiohttp_client(app)
    r = await client.get("/t/disk")
    assert r.status == status, await r.text()
    err = (await r.json())["error"]
    assert err["type"] == kind and "storage" in err["message"] and "database" not in err["message"]
    assert "database unavailable" not in caplog.text and "/data/artifacts" not in err["message"]
