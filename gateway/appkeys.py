"""Typed application-state keys shared by the adapters."""
from __future__ import annotations

from typing import TYPE_CHECKING

import asyncpg
from aiohttp import web

if TYPE_CHECKING:
    from gateway.config import Settings  # noqa: F401
    from gateway.crypto.signing import UrlSigner  # noqa: F401
    from gateway.memory.checkins import CheckinBuffer  # noqa: F401
    from gateway.memory.mirror import Mirror  # noqa: F401
    from gateway.memory.ratelimit import PollLimiter  # noqa: F401

SETTINGS = web.AppKey("settings", "Settings")
POOL = web.AppKey("pool", asyncpg.Pool)
MIRROR = web.AppKey("mirror", "Mirror")
CHECKINS = web.AppKey("checkins", "CheckinBuffer")
SIGNER = web.AppKey("signer", "UrlSigner")
LIMITER = web.AppKey("limiter", "PollLimiter")
RESOURCES = web.AppKey("resources", "Resources")  # what the services use (set at start-up)


class DeviceContext:
    """What the device routes use on every poll, behind one application lookup instead of four."""
    __slots__ = ("mirror", "checkins", "signer", "limiter")

    def __init__(self, mirror: "Mirror", checkins: "CheckinBuffer", signer: "UrlSigner", limiter: "PollLimiter"):
        self.mirror, self.checkins, self.signer, self.limiter = mirror, checkins, signer, limiter


DEVICE = web.AppKey("device", DeviceContext)
