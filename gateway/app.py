"""The application factory: wires the pool, mirror, check-in buffer and the protocol adapters."""
from __future__ import annotations

import asyncio
import hmac
import os

from aiohttp import web

from gateway import ui
from gateway.aio import cancel_and_wait
from gateway.api import artifacts, ddi, openapi
from gateway.api import memfault as memfault_api
from gateway.api.mgmt import ddi as manage_ddi
from gateway.api.mgmt import deployments as manage_deploy
from gateway.api.mgmt import fleet as manage_fleet
from gateway.api.mgmt import insight as manage_insight
from gateway.api.mgmt import org as manage_org
from gateway.api.mgmt import releases as manage
from gateway.appkeys import (
    CHECKINS,
    DEVICE,
    LIMITER,
    MIRROR,
    POOL,
    RESOURCES,
    SETTINGS,
    SIGNER,
    DeviceContext,
)
from gateway.config import Settings
from gateway.crypto.signing import UrlSigner
from gateway.domain.errors import Unauthorized
from gateway.fleet_metrics import FleetMetrics, build_info
from gateway.http import compat, fastroute
from gateway.http.errors import Inflight, add_route, json_response, not_found, quiet_malformed_requests
from gateway.memory.checkins import CheckinBuffer
from gateway.memory.ddi_cache import DDI_CACHE
from gateway.memory.ddi_loader import DDI_LOADER
from gateway.memory.mirror import Mirror
from gateway.memory.ratelimit import PollLimiter
from gateway.metrics import METRICS
from gateway.services import Resources
from gateway.services import retention as retention_service
from gateway.store import db as db_store

FLEET = web.AppKey("fleet_metrics", FleetMetrics)
RETENTION = web.AppKey("retention", retention_service.RetentionJob)


async def metrics_view(request: web.Request) -> web.Response:
    """Prometheus exposition. With OTA_METRICS_TOKEN set it needs `Authorization: Bearer <token>`;
    with OTA_METRICS_FLEET_LABELS=off it leaves out the fleet gauges that name projects, cohorts
    and versions (what one organization must not learn about another)."""
    settings = request.app[SETTINGS]
    if settings.metrics_token and not _bearer_matches(request, settings.metrics_token):
        raise Unauthorized("/metrics needs the metrics token (Authorization: Bearer ...)",
                           headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    fleet = await request.app[FLEET].families(request.app[POOL]) if settings.metrics_fleet_labels == "on" else []
    extra = [build_info(), *fleet]
    return web.Response(body=METRICS.render(extra), content_type="text/plain", charset="utf-8",
                        headers={"Cache-Control": "no-store"})


def _bearer_matches(request: web.Request, token: str) -> bool:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token.encode())


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok", "pid": os.getpid()})


async def readyz(request: web.Request) -> web.Response:
    mirror = request.app[MIRROR]
    try:
        async with asyncio.timeout(2):
            await request.app[POOL].fetchval("SELECT 1")
        db = True
    except Exception:
        db = False
    ok = db and mirror.loaded and mirror.connected
    return json_response({"database": db, "mirror_loaded": mirror.loaded, "notifications": mirror.connected},
                         status=200 if ok else 503)


async def _resources(app: web.Application):
    settings = app[SETTINGS]
    pool = await db_store.create_pool(settings.database_url, max_size=10)
    app[POOL] = pool
    async with pool.acquire() as conn:
        secret = await db_store.server_secret(conn, "url_signing_key")
    app[SIGNER] = UrlSigner(bytes.fromhex(secret), settings.effective_public_url, ttl=settings.url_ttl)
    mirror = Mirror(settings.database_url)
    await mirror.start(pool)
    app[MIRROR] = mirror
    checkins = CheckinBuffer(pool, interval=settings.flush_interval, max_size=settings.checkin_buffer_max,
                             last_seen_granularity=settings.last_seen_granularity)
    checkins.start()
    app[CHECKINS] = checkins
    app[DEVICE] = DeviceContext(mirror, checkins, app[SIGNER], app[LIMITER])
    app[RESOURCES] = Resources(pool, mirror, app[DDI_CACHE], app[DDI_LOADER])
    METRICS.gauge_fns.update({
        "ota_gateway_checkin_buffer_depth": lambda: len(checkins),
        "ota_gateway_checkin_known_devices": checkins.known,
        "ota_gateway_checkin_oldest_age_seconds": checkins.oldest_age,
        "ota_gateway_mirror_projects": lambda: len(mirror.projects),
        "ota_gateway_mirror_device_exceptions": lambda: sum(len(p.devices) for p in mirror.projects.values()),
        "ota_gateway_workers": lambda: 1,
    })
    snapshots = None
    if settings.metrics_dir:
        METRICS.use_dir(settings.metrics_dir)
        snapshots = asyncio.create_task(_write_snapshots())
    try:
        yield
    finally:
        await cancel_and_wait(snapshots)
        await checkins.stop()
        await mirror.stop()
        METRICS.write_snapshot()
        await pool.close()


async def _retention(app: web.Application):
    """Prune old history, feedback and audit rows: every process tries, one per period runs."""
    job = app[RETENTION] = retention_service.RetentionJob(app[POOL], retention_service.policies(app[SETTINGS]))
    job.start()
    yield
    await job.stop()


async def _write_snapshots() -> None:
    while True:
        await asyncio.sleep(1.0)
        METRICS.write_snapshot()


def init_app(settings: Settings) -> web.Application:
    """Build the aiohttp application for one gateway process."""
    # the parser's limits sit above ours so that oversized URLs and headers reach
    # errors.check_request_line and get a JSON error naming the problem (not aiohttp's text)
    app = web.Application(client_max_size=1024 * 1024, handler_args={
        "max_line_size": 65536, "max_field_size": 65536, "max_headers": 1024})
    app[SETTINGS] = settings
    quiet_malformed_requests()  # a request aiohttp's parser refuses is the client's error, not ours
    app[LIMITER] = PollLimiter()
    app[FLEET] = FleetMetrics()
    Inflight.cap = settings.max_inflight
    app[artifacts.BLOBS] = artifacts.BlobStore(settings.effective_storage_dir)
    app.cleanup_ctx.append(_resources)
    app.cleanup_ctx.append(_retention)
    app.cleanup_ctx.append(artifacts.housekeeping)  # expired uploads, stale temporary files
    memfault_api.setup(app)
    manage.setup(app)
    manage_fleet.setup(app)
    manage_deploy.setup(app)
    manage_org.setup(app)
    manage_insight.setup(app)
    artifacts.setup(app)
    ddi.setup(app)
    manage_ddi.setup(app)
    add_route(app, "GET", "/metrics", metrics_view, shed=False)
    add_route(app, "GET", "/healthz", healthz, shed=False)
    add_route(app, "GET", "/readyz", readyz, shed=False)
    openapi.setup(app)
    # the web dashboard: a sub-application at /ui/, instrumented like the API, with HTML error pages
    app.add_subapp(ui.MOUNT, ui.dashboard())
    add_route(app, "*", "/{tail:.*}", not_found)  # JSON 404 for anything else
    compat.check(app)  # the aiohttp internals of the fast paths: a changed one turns its path off
    fastroute.install(app, "GET", [*memfault_api.POLL_PATHS, ddi.MEMFAULT_ROOT + ddi.BASE, ddi.BASE])
    return app
