"""The client's address for per-source limits (login throttling, device authentication failures).

Behind a reverse proxy every request comes from the proxy: counting failures per peer would
make one limit for everybody, which an attacker could use to lock every client out. When the
peer is one of the proxies named in OTA_TRUSTED_PROXIES, the client is the nearest address in
X-Forwarded-For that is not a trusted proxy (proxies append, so it is read from the right).
"""
from __future__ import annotations

import ipaddress
from functools import lru_cache

from aiohttp import web

from gateway.appkeys import SETTINGS

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=8)
def networks(spec: str) -> tuple[Network, ...]:
    """The networks of a comma-separated list of addresses or CIDRs (validated by config)."""
    return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in spec.split(",") if part.strip())


def _trusted(address: str, nets: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in net for net in nets)


def client_address(request: web.BaseRequest) -> str | None:
    """The peer's address, or behind trusted proxies the client's as they forwarded it."""
    peer = request.remote
    spec = request.config_dict[SETTINGS].trusted_proxies
    if not spec or peer is None:
        return peer
    nets = networks(spec)
    if not _trusted(peer, nets):
        return peer
    for hop in reversed(request.headers.get("X-Forwarded-For", "").split(",")):
        hop = hop.strip()
        if hop and not _trusted(hop, nets):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer  # a forged or garbled header: count it against the proxy's address
    return peer
