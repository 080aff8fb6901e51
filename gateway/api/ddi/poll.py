"""The DDI reads a device polls: the base poll (memory only when nothing changes), deploymentBase, installedBase and cancelAction."""
from __future__ import annotations

import time

import orjson
from aiohttp import web

from gateway.api.ddi.device import device_route, durable, gateway_key
from gateway.api.ddi.render import (
    Rendered,
    action_history,
    action_id_of,
    base_url,
    cache_buster,
    deployment_doc,
    etag_of,
    jittered,
    json_answer,
    sleep_text,
)
from gateway.appkeys import DEVICE, MIRROR, POOL, RESOURCES, SETTINGS
from gateway.domain.ddi_actions import ActionView, Caller, effective_identity, plan
from gateway.domain.errors import NotFound
from gateway.http.errors import DB_UNAVAILABLE, error_response
from gateway.http.rawresponse import answer
from gateway.memory.ddi_loader import device_state
from gateway.memory.mirror import PayloadView, ReleaseView
from gateway.metrics import METRICS
from gateway.store import ddi as ddi_store


async def _create_action(request: web.Request, caller: Caller, rel: ReleaseView, pl: PayloadView,
                         reason: str) -> None:
    async def tx(conn):
        device_id = caller.state.device_id or await ddi_store.ensure_device(
            conn, caller.project.id, caller.serial, caller.state.hardware_version)
        await ddi_store.create_action(conn, caller.project.id, device_id, release_id=rel.id, payload_id=pl.id,
                                      software_type=rel.software_type, version=rel.version,
                                      from_version=rel.from_version, reason=reason)
    await durable(request, caller, tx)


def _cohort(caller: Caller):
    project = caller.project
    dev = project.devices.get(caller.serial)
    cohort_id = caller.cohort_override or (dev.cohort_id if dev else project.default_cohort_id)
    return project.cohorts.get(cohort_id) or project.cohorts[project.default_cohort_id]


async def _resolve(request: web.Request, caller: Caller) -> tuple[str | None, ActionView | None, str]:
    """(link kind, action, reason) for a poll, doing the durable writes a change needs."""
    offer = plan(caller)
    if offer.what == "cancel":
        await durable(request, caller, lambda conn: ddi_store.mark_canceling(conn, offer.action.id))
        return "cancelAction", offer.action, offer.reason
    if offer.what == "create":
        await _create_action(request, caller, offer.release, offer.payload, offer.reason)
        # another process may have created one first: whatever the database now holds wins
        caller.state = await device_state(request.app[RESOURCES], caller.project, caller.serial)
        offer = plan(caller)
        if not offer.shows:
            # as before: a second look that finds nothing to show names what it found
            return None, None, offer.what or offer.reason
    if offer.shows:
        return offer.what, offer.action, offer.reason
    return None, None, offer.reason


@device_route
async def base_poll(request: web.Request, caller: Caller) -> web.Response:
    """GET {base}: polling interval and links to what the device should do next."""
    project = caller.project
    ctx = request.app[DEVICE]
    if project.poll_limit and not ctx.limiter.allow((project.id, caller.serial), project.poll_limit, time.time()):
        METRICS.inc("ota_gateway_polls", ("ddi", "rate-limited"))
        retry = str(60 - int(time.time()) % 60)  # the limiter's window turns on the minute
        return error_response(429, f"device {caller.serial} polls more than {project.poll_limit} times a minute",
                              "rate_limited", {"Retry-After": retry})
    state = caller.state
    # the answer is a function of the device state, the project view, the device's exception
    # entry and the URL it came in on: a device polling again unchanged gets the same bytes
    match = request.match_info
    inputs = (project, project.devices.get(caller.serial), caller.cohort_override, match.route, match["tenant"])
    hit = state.rendered[0] if state.rendered else None
    if hit is None or hit.inputs[0] is not project or hit.inputs != inputs:
        # kept on the state it was rendered from (a poll that wrote reloaded it): any change to a
        # device's state replaces that object
        body, etag, reason = await _render_base(request, caller)
        state = caller.state
        hit = Rendered(inputs, body, etag, reason, effective_identity(project, state)[1] or "")
        state.rendered[:] = [hit]
    checkins = ctx.checkins
    checkins.add(project.id, caller.serial, state.hardware_version, hit.sw, None, "ddi")
    METRICS.inc("ota_gateway_polls", ("ddi", hit.reason))
    if request.headers.get("If-None-Match") == hit.etag:
        resp = answer(request, hit.unchanged)
    else:
        resp = answer(request, hit.head, hit.body)
    if not checkins.accepting:
        await checkins.room()
    return resp


async def _render_base(request: web.Request, caller: Caller) -> tuple[bytes, str, str]:
    """(body, ETag, reason) of a base poll, doing the durable writes a change needs."""
    kind, action, reason = await _resolve(request, caller)
    project, state = caller.project, caller.state
    cohort = _cohort(caller)
    base = request.app[SETTINGS].effective_public_url + base_url(request, caller)
    links = {}
    if kind == "deploymentBase":
        links[kind] = {"href": f"{base}/deploymentBase/{action.id}?c={cache_buster(action.id, cohort['ddi_update_type'])}"}
    elif kind == "cancelAction":
        links[kind] = {"href": f"{base}/cancelAction/{action.id}"}
    sw = effective_identity(project, state)[1]
    installed = state.installed.get(sw) if sw else None
    if installed is not None:
        links["installedBase"] = {"href": f"{base}/installedBase/{installed[0]}"}
    if state.config_requested:  # asked again after an update; a device that never says more is not pestered
        links["configData"] = {"href": f"{base}/configData"}
    doc = {"config": {"polling": {"sleep": sleep_text(jittered(cohort["ddi_polling_interval"], caller.serial))}}}
    if links:
        doc["_links"] = links
    body = orjson.dumps(doc)
    return body, etag_of(body), reason


def degrades(handler):
    """While the database is unreachable, a base poll whose device state is not cached here (or
    whose new offer would need a durable write) answers "nothing now, ask again soon" instead of
    503, when the gateway token alone authenticates the project from memory. Saying nothing is
    never wrong in DDI: the device polls again and gets the offer once the database is back."""
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except DB_UNAVAILABLE:
            mirror = request.app[MIRROR]
            key = gateway_key(mirror, request.headers.get("Authorization", ""))
            if key is None:
                raise
            project = key[0]
            # recorded like any poll: the check-in waits in the buffer until the database is back
            request.app[DEVICE].checkins.add(project.id, request.match_info["controllerId"], None,
                                             project.ddi_software_type or "", None, "ddi")
            METRICS.inc("ota_gateway_polls", ("ddi", "database_unavailable"))
            interval = project.cohorts[project.default_cohort_id]["ddi_polling_interval"]
            resp = json_answer(request, {"config": {"polling": {"sleep": sleep_text(min(interval, 60))}}})
            resp.headers["ota-gateway-reason"] = "database_unavailable"
            return resp

    wrapped.__name__, wrapped.__doc__ = handler.__name__, handler.__doc__
    return wrapped


def _open_action(caller: Caller, action_id: int) -> ActionView | None:
    return next((a for a in caller.state.actions.values() if a.id == action_id), None)


@device_route
async def deployment_base(request: web.Request, caller: Caller) -> web.Response:
    """GET {base}/deploymentBase/{actionId}: the update to install."""
    action_id = action_id_of(request)
    action = _open_action(caller, action_id)
    if action is None or action.status != "open":
        raise NotFound(f"actionId {action_id} is not an open deployment of device {caller.serial}")
    rel = caller.project.releases.get(action.release_id)
    pl = caller.project.payloads.get(action.payload_id)
    if rel is None or pl is None:
        raise NotFound(f"actionId {action_id}: its release no longer exists")
    history = await action_history(request, action_id, action.status)
    if not action.retrieved:  # once per action, so that operators see the device fetched it
        await durable(request, caller, lambda conn: ddi_store.mark_retrieved(conn, action_id), notify=False)
    return json_answer(request, deployment_doc(request, caller, action_id, rel, pl, _cohort(caller)["ddi_update_type"],
                                         history))


@device_route
async def installed_base(request: web.Request, caller: Caller) -> web.Response:
    """GET {base}/installedBase/{actionId}: a finished action's document (to download it again)."""
    action_id = action_id_of(request)
    row = await ddi_store.device_action(request.app[POOL], caller.project.id, caller.serial, action_id)
    if row is None or row["status"] not in ("succeeded", "failed"):
        raise NotFound(f"actionId {action_id} is not a finished action of device {caller.serial}")
    rel = caller.project.releases.get(row["release_id"])
    pl = caller.project.payloads.get(row["payload_id"])
    if rel is None or pl is None:
        raise NotFound(f"actionId {action_id}: its release no longer exists")
    history = await action_history(request, action_id, row["status"])
    return json_answer(request, deployment_doc(request, caller, action_id, rel, pl, _cohort(caller)["ddi_update_type"],
                                         history))


@device_route
async def cancel_action(request: web.Request, caller: Caller) -> web.Response:
    """GET {base}/cancelAction/{actionId}: the server asks the device to stop an action."""
    action_id = action_id_of(request)
    action = _open_action(caller, action_id)
    if action is None or action.status != "canceling":
        row = await ddi_store.device_action(request.app[POOL], caller.project.id, caller.serial, action_id)
        if row is None or row["status"] not in ("canceling", "canceled"):
            raise NotFound(f"actionId {action_id} is not being canceled on device {caller.serial}")
    return json_answer(request, {"id": str(action_id), "cancelAction": {"stopId": str(action_id)}})
