"""The poll benchmark's connection count per server process, which it prints beside each
latency run (an uneven spread of the generator's connections overloads one worker)."""
from __future__ import annotations

import asyncio
import shutil
import sys
from pathlib import Path

import pytest
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "loadtest"))
import bench_poll  # noqa: E402


@pytest.mark.skipif(not shutil.which("ss"), reason="ss (iproute2) is not installed")
async def test_connection_split_counts_server_side_connections_per_process(aiohttp_server):
    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", ok)
    server = await aiohttp_server(app)
    assert bench_poll.connection_split(server.port) == []
    clients = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(3)]
    try:
        # the server has accepted them once one request on each is answered
        for reader, writer in clients:
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            await writer.drain()
            assert (await reader.readline()).startswith(b"HTTP/1.1 200")
        # this process holds both ends; only the server's side (source port = the server's) counts
        assert await asyncio.to_thread(bench_poll.connection_split, server.port) == [3]
    finally:
        for _, writer in clients:
            writer.close()
