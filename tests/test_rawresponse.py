"""Poll answers written below aiohttp's response machinery (gateway/rawresponse.py) are valid
HTTP/1.1 on the wire, keep the connection usable, and fall back to aiohttp for HEAD, HTTP/1.0
and `Connection: close`; read here byte by byte from a raw socket, as a device's HTTP stack would."""
from __future__ import annotations

import asyncio
import email.utils
import re

import pytest
from aiohttp import web

from gateway.http.rawresponse import Head, RawResponse, answer

OK = Head(200, {"Content-Type": "text/plain; charset=utf-8", "Cache-Control": "no-store"})
EMPTY = Head(204, {"memfault-reason": "up_to_date", "Cache-Control": "no-store"})
UNCHANGED = Head(304, {"ETag": '"0badcafe"'})


@pytest.fixture
async def server(aiohttp_server):
    async def ok(request):
        return answer(request, OK, b"https://dl.example/fw.bin")

    async def empty(request):
        return answer(request, EMPTY)

    async def unchanged(request):
        return answer(request, UNCHANGED)

    async def kind(request):  # which path an answer took
        return web.Response(text=type(answer(request, OK, b"x")).__name__)

    app = web.Application()
    for path, h in (("/ok", ok), ("/empty", empty), ("/unchanged", unchanged), ("/kind", kind)):
        app.router.add_get(path, h)
    return await aiohttp_server(app)


async def read_answer(reader: asyncio.StreamReader, method: str = "GET") -> tuple[str, dict[str, str], bytes]:
    head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).decode("latin-1")
    status, *lines = head[:-4].split("\r\n")
    headers = {k.lower(): v for k, _, v in (line.partition(": ") for line in lines)}
    assert len(headers) == len(lines), "a header repeated"
    n = int(headers.get("content-length", "0")) if method != "HEAD" else 0
    return status, headers, await asyncio.wait_for(reader.readexactly(n), 5) if n else b""


async def test_keep_alive_answers_on_one_connection(server):
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    # three requests written at once: each answer must be whole and delimited
    writer.write(b"".join(f"GET {p} HTTP/1.1\r\nHost: t\r\n\r\n".encode() for p in ("/ok", "/empty", "/ok")))
    answers = [await read_answer(reader) for _ in range(3)]
    for status, headers, body in (answers[0], answers[2]):
        assert status == "HTTP/1.1 200 OK" and body == b"https://dl.example/fw.bin"
        assert headers["content-length"] == str(len(body))
        assert headers["content-type"] == "text/plain; charset=utf-8" and headers["cache-control"] == "no-store"
        assert email.utils.parsedate_to_datetime(headers["date"]).tzname() == "UTC"
        assert headers["server"].startswith("Python/") and "connection" not in headers
    status, headers, body = answers[1]
    assert status == "HTTP/1.1 204 No Content" and body == b""
    assert "content-length" not in headers and headers["memfault-reason"] == "up_to_date"
    writer.write(b"GET /unchanged HTTP/1.1\r\nHost: t\r\n\r\n")
    status, headers, body = await read_answer(reader)
    assert status == "HTTP/1.1 304 Not Modified" and headers["etag"] == '"0badcafe"' and body == b""
    assert "content-length" not in headers
    writer.close()


@pytest.mark.parametrize("request_line,extra,path_taken,closes", [
    ("GET /kind HTTP/1.1", "", "RawResponse", False),
    ("HEAD /kind HTTP/1.1", "", "Response", False),
    ("GET /kind HTTP/1.1", "Connection: close\r\n", "Response", True),
    ("GET /kind HTTP/1.0", "", "Response", True),
])
async def test_only_keep_alive_http11_gets_take_the_raw_path(server, request_line, extra, path_taken, closes):
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(f"{request_line}\r\nHost: t\r\n{extra}\r\n".encode())
    method = request_line.split()[0]
    status, headers, body = await read_answer(reader, method)
    assert status.endswith("200 OK")
    if method == "GET":
        assert body.decode() == path_taken
    if closes:
        assert await asyncio.wait_for(reader.read(), 5) == b""  # the server closed the connection
    writer.close()


@pytest.mark.parametrize("request_line,extra,method", [
    ("HEAD /ok HTTP/1.1", "", "HEAD"),
    ("GET /ok HTTP/1.0", "", "GET"),
    ("GET /ok HTTP/1.1", "Connection: close\r\n", "GET"),
])
async def test_fallback_answers_carry_the_same_headers(server, request_line, extra, method):
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(f"{request_line}\r\nHost: t\r\n{extra}\r\n".encode())
    status, headers, body = await read_answer(reader, method)
    assert re.fullmatch(r"HTTP/1\.[01] 200 OK", status)
    assert headers["content-type"] == "text/plain; charset=utf-8" and headers["cache-control"] == "no-store"
    assert headers["content-length"] == "25" and body == (b"" if method == "HEAD" else b"https://dl.example/fw.bin")
    writer.close()


@pytest.mark.parametrize("headers", [
    {"X-Evil": "a\r\nSet-Cookie: x=1"},
    {"X-Evil\n": "a"},
    {"Content-Length": "5"},
    {"Connection": "close"},
])
def test_heads_refuse_what_could_split_or_contradict_an_answer(headers):
    with pytest.raises(ValueError):
        Head(200, headers)


def test_a_raw_answer_reports_its_status_and_keeps_the_connection():
    r = RawResponse(EMPTY, b"")
    assert r.status == 204 and r.keep_alive is True
