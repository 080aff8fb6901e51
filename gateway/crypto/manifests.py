"""Signed release manifests: what a device can verify offline before installing.

The manifest is canonical JSON (sorted keys, no spaces) naming the project, release and the
artifact with its size and hashes; the signature is Ed25519 over those exact bytes, with the
project's key (`GET …/signing-key` publishes the public key as PEM). A device verifies the
signature, then checks the downloaded bytes against the manifest's sha256."""
from __future__ import annotations

import base64
import hashlib

import orjson

from gateway.crypto import ed25519


def key_id(public: bytes) -> str:
    return hashlib.sha256(public).hexdigest()[:16]


def manifest(project_slug: str, rel, pl) -> bytes:
    return orjson.dumps({
        "project": project_slug, "software_type": rel.software_type, "version": rel.version,
        "delta_from": rel.from_version, "hardware_version": pl.hardware_version,
        "artifact": {"filename": pl.filename, "size": pl.size, "sha256": pl.sha256, "sha1": pl.sha1, "md5": pl.md5},
    }, option=orjson.OPT_SORT_KEYS)


def signature(view, rel, pl) -> dict | None:
    """The signature block for one payload, or None when the project signs nothing; computed
    once per payload per mirror load."""
    if view.signing_seed is None:
        return None
    hit = pl.cache.get("signature")
    if hit is None:
        m = manifest(view.slug, rel, pl)
        hit = {"algorithm": "ed25519", "key_id": view.signing_key_id, "manifest": m.decode(),
               "value": base64.b64encode(ed25519.sign(view.signing_seed, m)).decode()}
        pl.cache["signature"] = hit
    return hit
