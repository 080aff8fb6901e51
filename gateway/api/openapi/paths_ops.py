"""Paths of operations: metrics, liveness, readiness and this document."""
from __future__ import annotations

from gateway.api.openapi.helpers import (
    ANY_OBJECT,
    ERROR,
    INT,
    STR,
    errors,
    json_content,
    obj,
    ok,
    op,
    ref,
)


def operations_paths() -> dict:
    return {
        "/metrics": {"get": op("Prometheus metrics", "operations", {
            "200": {"description": "text exposition format", "content": {"text/plain": {"schema": STR}}},
            **errors(400)}, security=[])},
        "/healthz": {"get": op("Liveness", "operations", {
            **ok(obj({"status": {"const": "ok"}, "pid": INT})), **errors(400)}, security=[])},
        "/readyz": {"get": op("Readiness: database, mirror and notifications", "operations", {
            "200": {"description": "ready", "content": json_content(ref("Readiness"))},
            "503": {"description": "not ready", "content": json_content(ref("Readiness"))},
            "400": ERROR, "414": ERROR}, security=[])},
        "/api/openapi.json": {"get": op("This document", "operations", {
            **ok(ANY_OBJECT), **errors(400)}, security=[])},
    }
