"""DDI artifact lists and downloads (the device's own signed links)."""
from __future__ import annotations

from urllib.parse import quote

from aiohttp import web

from gateway.api.artifacts import BLOBS
from gateway.api.ddi.device import authenticate, device_route
from gateway.api.ddi.render import artifact_json, json_answer
from gateway.appkeys import MIRROR, SIGNER
from gateway.domain.ddi_actions import Caller
from gateway.domain.errors import NotFound
from gateway.http.delivery import send_blob


@device_route
async def artifact_list(request: web.Request, caller: Caller) -> web.Response:
    """GET {base}/softwaremodules/{id}/artifacts: the module's artifacts (one payload here)."""
    raw_id = request.match_info["softwareModuleId"]
    pl = caller.project.payloads.get(int(raw_id)) if raw_id.isascii() and raw_id.isdigit() else None
    if pl is None or not caller.state.payload_allowed(pl.id):
        raise NotFound(f"softwareModuleId {raw_id[:40]!r} is not assigned to this device")
    return json_answer(request, [artifact_json(request, caller, pl)])


async def artifact(request: web.Request) -> web.StreamResponse:
    """GET/HEAD {base}/softwaremodules/{id}/artifacts/{fileName}[.MD5SUM]: with the device's
    Authorization header, or with the signed URL the deployment document handed out."""
    signed = request.app[SIGNER].verify(request.rel_url.raw_path, request.query.get("e"), request.query.get("s"))
    raw_id = request.match_info["softwareModuleId"]
    if not (raw_id.isascii() and raw_id.isdigit()):
        raise NotFound(f"softwareModuleId {raw_id[:40]!r} not found")
    module_id = int(raw_id)
    if signed:
        pl = next((p.payloads[module_id] for p in request.app[MIRROR].projects.values()
                   if module_id in p.payloads), None)
    else:
        caller = await authenticate(request)
        if not isinstance(caller, Caller):
            return caller
        pl = caller.project.payloads.get(module_id)
        if pl is not None and not caller.state.payload_allowed(module_id):
            pl = None
    if pl is None:
        raise NotFound(f"softwareModuleId {module_id} is not assigned to this device")
    name = request.match_info["fileName"]
    disposition = f"attachment;filename={quote(name, safe='._-+ ')}"
    if name == pl.filename + ".MD5SUM" and name != pl.filename:
        return web.Response(text=f"{pl.md5}  {pl.filename}", content_type="text/plain",
                            headers={"Content-Disposition": disposition})
    if name != pl.filename:
        raise NotFound(f"fileName {name[:64]!r} is not an artifact of softwareModuleId {module_id}")
    return await send_blob(request, request.app[BLOBS].path(pl.sha256), pl.sha256,
                           headers={"Content-Disposition": disposition, "X-Content-Type-Options": "nosniff"})
