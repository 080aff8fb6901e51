"""The client address behind trusted proxies (OTA_TRUSTED_PROXIES), table-driven."""
from __future__ import annotations

import pytest
from aiohttp.test_utils import make_mocked_request

from gateway.appkeys import SETTINGS
from gateway.config import Settings
from gateway.http.client_ip import client_address


def _request(peer: str, forwarded: str | None, trusted: str):
    from aiohttp import web

    app = web.Application()
    app[SETTINGS] = Settings(trusted_proxies=trusted)
    headers = {"X-Forwarded-For": forwarded} if forwarded is not None else {}
    req = make_mocked_request("GET", "/", headers=headers, app=app)
    req._transport_peername = (peer, 12345)  # noqa: SLF001 - what aiohttp reads for .remote
    return req


@pytest.mark.parametrize("peer,forwarded,trusted,client", [
    ("203.0.113.9", "198.51.100.1", "", "203.0.113.9"),              # no trusted proxy: the peer
    ("203.0.113.9", "198.51.100.1", "10.0.0.0/8", "203.0.113.9"),    # a peer that is no proxy: header ignored
    ("10.0.0.2", "198.51.100.1", "10.0.0.0/8", "198.51.100.1"),      # behind the proxy
    ("10.0.0.2", "6.6.6.6, 198.51.100.1", "10.0.0.0/8", "198.51.100.1"),  # a forged left entry is skipped
    ("10.0.0.2", "198.51.100.1, 10.0.0.7", "10.0.0.0/8", "198.51.100.1"),  # two proxies in a row
    ("10.0.0.2", "not-an-ip", "10.0.0.0/8", "10.0.0.2"),              # garbage: the proxy's own
    ("10.0.0.2", None, "10.0.0.0/8", "10.0.0.2"),                     # no header
    ("::ffff:10.0.0.2", "2001:db8::1", "10.0.0.0/8", "2001:db8::1"),  # IPv4-mapped proxy address
])
def test_client_address(peer, forwarded, trusted, client):
    req = _request(peer, forwarded, trusted)
    assert client_address(req) == client
