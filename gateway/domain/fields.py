"""Plain field validation and formatting shared by the adapters and the services (pure)."""
from __future__ import annotations

from gateway.domain.errors import BadRequest

_SLUG_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-_")


_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.+:")


def need_str(obj: dict, key: str, label: str | None = None, *, required: bool = True,
             charset: set | None = _NAME_CHARS, max_len: int = 128) -> str | None:
    label = label or key
    v = obj.get(key)
    if v is None or v == "":
        if required:
            raise BadRequest(f"{label} is required")
        return None
    if not isinstance(v, str):
        raise BadRequest(f"{label} must be a string")
    if not v.isprintable():  # control characters never belong in names, slugs or file names
        raise BadRequest(f"{label} must not contain control characters")
    if len(v) > max_len or (charset is not None and not set(v) <= charset):
        raise BadRequest(f"{label} must be 1-{max_len} characters of [a-zA-Z0-9-_.+:]"
                         if charset is _NAME_CHARS else f"{label} is invalid")
    return v


def iso(ts) -> str | None:
    return ts.isoformat() if ts is not None else None
