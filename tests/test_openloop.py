"""The open-loop load generator (loadtest/openloop.c) sends what it is asked to, at the rate
asked, and counts what comes back; it is what the latency-at-load figures rest on."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "loadtest"))
import openloop  # noqa: E402

pytestmark = pytest.mark.skipif(not any(shutil.which(c) for c in ("cc", "gcc", "clang")),
                                reason="no C compiler to build loadtest/openloop.c")


async def test_requests_arrive_at_the_rate_with_the_fleet_distribution(aiohttp_server):
    seen: list[web.Request] = []

    async def poll(request: web.Request) -> web.Response:
        seen.append(request)
        # answers vary like the gateway's: a body, no body, an error
        if request.query.get("current_version") == "2.0.0":
            return web.Response(status=204)
        if request.query["hardware_version"] == "dvt":
            return web.json_response({"error": "no release"}, status=404)
        if request.query["hardware_version"] == "evt":  # chunked, in pieces: the parser must reassemble it
            resp = web.StreamResponse()
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            for piece in (b"https://example.invalid/", b"y" * 2000, b"/fw.bin"):
                await resp.write(piece)
            await resp.write_eof()
            return resp
        return web.Response(text="https://example.invalid/" + "x" * 3000)

    app = web.Application()
    app.router.add_get("/api/v0/releases/latest/url", poll)
    server = await aiohttp_server(app)
    loop = __import__("asyncio").get_running_loop()
    r = await loop.run_in_executor(None, lambda: openloop.run(
        "127.0.0.1", server.port, rate=400, seconds=2, connections=8, warmup=0.5, mode="url",
        devices=50, key="k" * 32))
    assert 650 <= r["completed"] <= 950  # 400/s for 2 s, Poisson
    assert r["errors"] == 0
    assert r["status_2xx"] + r["status_4xx"] == r["completed"]
    assert r["status_4xx"] > 0 and r["status_2xx"] > 0
    assert 0 < r["p50_ms"] <= r["p99_ms"] <= r["max_ms"]
    serials = {q.query["device_serial"] for q in seen}
    assert serials <= {f"D{i}" for i in range(1, 51)} and len(serials) > 40
    assert all(q.headers["Memfault-Project-Key"] == "k" * 32 for q in seen)
    # a device reports the same hardware and version on every poll (poll.lua's formulas)
    by_serial = {}
    for q in seen:
        by_serial.setdefault(q.query["device_serial"], set()).add(
            (q.query["hardware_version"], q.query.get("current_version")))
    assert all(len(v) == 1 for v in by_serial.values())
