"""The start-up check of the aiohttp internals the device fast paths use (gateway/http/compat.py):
each internal taken away (or changed) while the app is built turns its fast path off with
exactly one warning naming it, and the app still answers polls correctly through aiohttp's own
path; with aiohttp as installed, both fast paths are on and nothing is logged."""
from __future__ import annotations

import asyncio
import contextlib
import logging

import aiohttp
import pytest
from aiohttp import web
from aiohttp.base_protocol import BaseProtocol
from aiohttp.web_protocol import RequestHandler
from conftest import PROJECT, PROJECT_KEY, deploy, upload_release

from gateway.app import healthz, init_app
from gateway.appkeys import MIRROR
from gateway.http import compat
from gateway.http.rawresponse import RawResponse

LATEST = "/api/v0/releases/latest?device_serial=C1&hardware_version=evt&software_type=main"
DDI = "/api/v0/hawkbit/default/controller/v1/C1"


@pytest.fixture(autouse=True)
def restore(monkeypatch, caplog):
    """The check's results are process-wide: put them back for the other test modules."""
    monkeypatch.setattr(compat, "raw_answers", compat.raw_answers)
    monkeypatch.setattr(compat, "fast_routes", compat.fast_routes)
    monkeypatch.setattr(compat, "_access_log_warned", False)
    caplog.set_level(logging.INFO, logger="ota_gateway.compat")


@pytest.fixture
def raw_prepared(monkeypatch):
    """How many answers went out through RawResponse (instead of aiohttp's web.Response)."""
    calls = []
    original = RawResponse.prepare

    async def prepare(self, request):
        calls.append(request.path)
        return await original(self, request)

    monkeypatch.setattr(RawResponse, "prepare", prepare)
    return calls


def compat_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "ota_gateway.compat" and r.levelno >= logging.WARNING]


async def polls_answer_correctly(client, raw_prepared: list) -> None:
    """Memfault polls (a release: 200 JSON; up to date: 204 with a reason) and a DDI base poll
    (200 JSON), twice on one keep-alive connection, answered as when every fast path is on."""
    if not any(r.version == "1.0.0" for r in client.server.app[MIRROR].by_slug[PROJECT].releases.values()):
        await upload_release(client, b"firmware " * 100, version="1.0.0")  # once per module
        await deploy(client, "1.0.0")
    for _ in range(50):  # the mirror reloads on NOTIFY
        r = await client.get(LATEST + "&current_version=0.9.0", headers={"Memfault-Project-Key": PROJECT_KEY})
        if r.status == 200:
            break
        await asyncio.sleep(0.05)
    raw_prepared.clear()  # count from here
    for _ in range(2):
        r = await client.get(LATEST + "&current_version=0.9.0", headers={"Memfault-Project-Key": PROJECT_KEY})
        assert r.status == 200 and r.content_type == "application/json", await r.text()
        assert (await r.json())["version"] == "1.0.0"
        r = await client.get(LATEST + "&current_version=1.0.0", headers={"Memfault-Project-Key": PROJECT_KEY})
        assert r.status == 204 and r.headers["memfault-reason"] == "latest", await r.text()
        assert await r.read() == b""
        r = await client.get(DDI, headers={"Authorization": f"GatewayToken {PROJECT_KEY}"})
        assert r.status == 200 and r.content_type == "application/json", await r.text()
        assert "config" in await r.json()
    r = await client.get(LATEST, headers={"Memfault-Project-Key": "0" * 32})
    assert r.status == 403


def test_as_installed_every_internal_is_as_expected(settings, caplog):
    app = init_app(settings)
    assert compat.check(app) == {}
    assert compat.raw_answers and compat.fast_routes and compat_warnings(caplog) == []
    assert "resolve" in vars(app.router)  # the fast resolver is installed


async def test_both_fast_paths_serve_polls_as_installed(aiohttp_client, settings, caplog, raw_prepared):
    """The control: the spy sees raw answers, so its silence in the tests below means something."""
    client = await aiohttp_client(init_app(settings))
    await polls_answer_correctly(client, raw_prepared)
    assert len(raw_prepared) == 6 and compat_warnings(caplog) == []


# -- raw answers (gateway/http/rawresponse.py) --------------------------------------------------

def gone(owner, name, *, while_built_only=False):
    """Take `owner.name` away, for the whole test, or only while the app is built (a slot that
    aiohttp's own protocol objects need to serve at all)."""
    def take_away(monkeypatch):
        if not while_built_only:
            monkeypatch.delattr(owner, name)
            return contextlib.nullcontext()

        @contextlib.contextmanager
        def while_built():
            with monkeypatch.context() as m:
                m.delattr(owner, name)
                yield
        return while_built()
    return take_away


@pytest.mark.parametrize("internal,take_away", [
    ("aiohttp.base_protocol.BaseProtocol._paused", gone(BaseProtocol, "_paused", while_built_only=True)),
    ("aiohttp.base_protocol.BaseProtocol._drain_helper", gone(BaseProtocol, "_drain_helper")),
    ("aiohttp.helpers.rfc822_formatted_time", gone(aiohttp.helpers, "rfc822_formatted_time")),
    ("aiohttp.web_protocol.RequestHandler.access_logger",
     gone(RequestHandler, "access_logger", while_built_only=True)),
], ids=["_paused", "_drain_helper", "rfc822_formatted_time", "access_logger"])
async def test_a_missing_raw_answer_internal_turns_raw_answers_off(aiohttp_client, settings, caplog, monkeypatch,
                                                                   raw_prepared, internal, take_away):
    with take_away(monkeypatch):
        app = init_app(settings)
    warnings = compat_warnings(caplog)
    assert len(warnings) == 1 and internal in warnings[0] and "raw poll answers are off" in warnings[0], warnings
    assert not compat.raw_answers and compat.fast_routes
    client = await aiohttp_client(app)
    await polls_answer_correctly(client, raw_prepared)
    assert raw_prepared == []  # every answer was aiohttp's web.Response
    assert len(compat_warnings(caplog)) == 1


def test_a_changed_paused_flag_is_caught(monkeypatch):
    """Present but no longer following pause_writing: the same as missing."""
    monkeypatch.setattr(BaseProtocol, "pause_writing", lambda self: None)
    assert "_paused" in " ".join(compat.check(web.Application()))


def test_a_drain_helper_that_wants_arguments_is_caught(monkeypatch):
    async def _drain_helper(self, timeout):
        pass

    monkeypatch.setattr(BaseProtocol, "_drain_helper", _drain_helper)
    problems = compat.check(web.Application())
    assert "takes arguments" in problems["aiohttp.base_protocol.BaseProtocol._drain_helper"]


async def test_a_connection_that_access_logs_gets_ordinary_answers(aiohttp_server, aiohttp_client, settings, caplog,
                                                                  raw_prepared):
    """aiohttp's AccessLogger cannot read a RawResponse: with an access logger on, polls are
    answered (and logged) as web.Responses, with one warning however many polls."""
    access = logging.getLogger("test_compat.access")
    caplog.set_level(logging.INFO, logger=access.name)
    client = await aiohttp_client(await aiohttp_server(init_app(settings), access_log=access))
    await polls_answer_correctly(client, raw_prepared)
    assert raw_prepared == []
    warnings = compat_warnings(caplog)
    assert len(warnings) == 1 and "access log is on" in warnings[0], warnings
    lines = [r for r in caplog.records if r.name == access.name]
    assert any(DDI in r.getMessage() and '" 200 ' in r.getMessage() for r in lines), [r.getMessage() for r in lines]
    assert not [r for r in lines if r.exc_info or "Error in logging" in r.getMessage()]


# -- fast routes (gateway/http/fastroute.py) ----------------------------------------------------

class LinearRouter(web.UrlDispatcher):
    """A router like aiohttp's before it had a prefix index: no `_resource_index`, every resource
    tried in registration order."""

    def __init__(self) -> None:
        super().__init__()
        del self._resource_index

    def index_resource(self, resource) -> None:
        pass

    def unindex_resource(self, resource) -> None:
        pass

    async def resolve(self, request):
        allowed: set[str] = set()
        for resource in self._resources:
            match, methods = await resource.resolve(request)
            if match is not None:
                return match
            allowed |= methods
        if allowed:
            return web.MatchInfoError(web.HTTPMethodNotAllowed(request.method, allowed))
        return web.MatchInfoError(web.HTTPNotFound())


def resolve_elsewhere(monkeypatch):
    """An Application that resolves requests without calling `self._router.resolve` itself."""
    handle = web.Application._handle

    async def _handle(self, request):
        return await handle(self, request)

    monkeypatch.setattr(web.Application, "_handle", _handle)


@pytest.mark.parametrize("internal,take_away", [
    ("aiohttp.web_urldispatcher.UrlDispatcher._resource_index",
     lambda mp: mp.setattr(aiohttp.web_app, "UrlDispatcher", LinearRouter)),
    # an index filed another way: aiohttp still finds every resource, the fast path's shadows would be wrong
    ("aiohttp.web_urldispatcher.UrlDispatcher._resource_index",
     lambda mp: mp.setattr(web.UrlDispatcher, "_get_resource_index_key", lambda self, resource: "/")),
    ("aiohttp.web_urldispatcher.UrlDispatcher.resolve", resolve_elsewhere),
], ids=["index-missing", "index-filed-otherwise", "resolve-not-called"])
async def test_a_missing_fast_route_internal_turns_fast_routes_off(aiohttp_client, settings, caplog, monkeypatch,
                                                                   raw_prepared, internal, take_away):
    take_away(monkeypatch)
    app = init_app(settings)
    warnings = compat_warnings(caplog)
    assert len(warnings) == 1 and internal in warnings[0] and "fast device routes are off" in warnings[0], warnings
    assert not compat.fast_routes and compat.raw_answers
    assert "resolve" not in vars(app.router)  # aiohttp's own resolver
    client = await aiohttp_client(app)
    await polls_answer_correctly(client, raw_prepared)
    assert len(raw_prepared) == 6  # the other fast path is unaffected
    assert len(compat_warnings(caplog)) == 1


def test_a_router_that_takes_no_resolve_is_caught(monkeypatch):
    def refuse(self, name, value):
        if name == "resolve":
            raise AttributeError("read-only")
        object.__setattr__(self, name, value)

    monkeypatch.setattr(web.UrlDispatcher, "__setattr__", refuse)
    problems = compat.check(web.Application())
    assert "cannot be replaced" in problems["aiohttp.web_urldispatcher.UrlDispatcher.resolve"]


def test_a_later_check_with_everything_in_place_turns_the_paths_back_on(monkeypatch):
    with monkeypatch.context() as m:
        m.delattr(BaseProtocol, "_drain_helper")
        m.setattr(web.UrlDispatcher, "_get_resource_index_key", lambda self, resource: "/")
        app = web.Application()
        app.router.add_get("/a/b", healthz)
        assert set(compat.check(app)) == {"aiohttp.base_protocol.BaseProtocol._drain_helper",
                                          "aiohttp.web_urldispatcher.UrlDispatcher._resource_index"}
        assert not compat.raw_answers and not compat.fast_routes
    assert compat.check(web.Application()) == {} and compat.raw_answers and compat.fast_routes
