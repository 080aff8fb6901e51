"""hawkBit DDI device API (specs/ddi.md), served at `/{tenant}/controller/v1/{controllerId}` and
at Memfault's `/api/v0/hawkbit/{tenant}/controller/v1/{controllerId}`.

controllerId is the device serial. `GatewayToken <project key>` names the project (the tenant is
then ignored, so Memfault's fixed `default` works) and may act as any serial; `TargetToken
<device token>` is checked against the device of the tenant (= project slug). What a device gets
next is the Memfault API's answer (`ProjectView.decide`) through `domain.ddi_actions.plan`; an
offer becomes an action whose feedback is written synchronously. A steady-state base poll
touches only memory: the mirror and the per-device cache (`memory.ddi_cache`).

Modules: `device` (authentication, state, durable writes), `poll` (what a device reads),
`feedback` (what it reports), `render` (documents and links), `files` (artifacts).
"""
from __future__ import annotations

from aiohttp import web

from gateway.api.ddi.device import BASE, MEMFAULT_ROOT
from gateway.api.ddi.feedback import cancel_feedback, config_data, deployment_feedback
from gateway.api.ddi.files import artifact, artifact_list
from gateway.api.ddi.poll import (
    base_poll,
    cancel_action,
    degrades,
    deployment_base,
    installed_base,
)
from gateway.api.ddi.render import jittered
from gateway.appkeys import MIRROR, POOL, SETTINGS
from gateway.http.errors import add_route
from gateway.memory import ddi_shared
from gateway.memory.ddi_cache import DDI_CACHE, DeviceCache
from gateway.memory.ddi_loader import DDI_LOADER, StateLoader
from gateway.metrics import METRICS

__all__ = ["BASE", "MEMFAULT_ROOT", "jittered", "setup"]


async def _attach_cache(app: web.Application) -> None:
    app[MIRROR].hooks.append(app[DDI_CACHE].on_message)
    METRICS.gauge_fns["ota_gateway_ddi_cached_devices"] = app[DDI_CACHE].__len__
    METRICS.gauge_fns["ota_gateway_ddi_shared_devices"] = app[DDI_CACHE].shared_len


def setup(app: web.Application) -> None:
    app[DDI_CACHE] = DeviceCache(app[SETTINGS].ddi_cache_size, ddi_shared.table(app[SETTINGS].ddi_shared_size))
    app[DDI_LOADER] = StateLoader(lambda: app[POOL])
    app.on_startup.append(_attach_cache)  # after the cleanup contexts: the mirror exists by then
    for root in ("", MEMFAULT_ROOT):
        b = root + BASE
        add_route(app, "GET", b, degrades(base_poll))
        add_route(app, "GET", b + "/deploymentBase/{actionId}", deployment_base)
        add_route(app, "POST", b + "/deploymentBase/{actionId}/feedback", deployment_feedback)
        add_route(app, "GET", b + "/cancelAction/{actionId}", cancel_action)
        add_route(app, "POST", b + "/cancelAction/{actionId}/feedback", cancel_feedback)
        add_route(app, "PUT", b + "/configData", config_data)
        add_route(app, "GET", b + "/installedBase/{actionId}", installed_base)
        add_route(app, "GET", b + "/softwaremodules/{softwareModuleId}/artifacts", artifact_list)
        add_route(app, "GET", b + "/softwaremodules/{softwareModuleId}/artifacts/{fileName}", artifact)
