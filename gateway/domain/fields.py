"""Plain field validation and formatting shared by the adapters and the services (pure)."""
from __future__ import annotations

from gateway.domain.errors import BadRequest, NotFound

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


# Ids are PostgreSQL bigints: a longer number can name nothing, and sent to the database it
# would come back as an encoding error instead of an answer about the field.
MAX_ID = 2**63 - 1


def is_id(raw: str) -> bool:
    """Whether a reference is a numeric id: ASCII digits within bigint range (`"²".isdigit()` is
    True, and `int("٣")` is 3, so neither str method alone will do)."""
    return raw.isascii() and raw.isdigit() and int(raw) <= MAX_ID


def parse_id(raw: str, label: str) -> int:
    """An id from a URL or a form: a value that is not a number names nothing (404); a number
    past the bigint range is refused naming `label` (400)."""
    if not (raw.isascii() and raw.isdigit()):
        raise NotFound(f"{label} {raw[:40]!r} not found")
    if len(raw) > 19 or int(raw) > MAX_ID:
        raise BadRequest(f"invalid value for {label}: {raw[:24]}… is out of range (at most {MAX_ID})")
    return int(raw)


def parse_int(raw: str | None, label: str, *, default: int | None, lo: int, hi: int,
              clamp: bool = False) -> int | None:
    """An integer query or form parameter (ASCII, optional sign), `default` when absent or empty.
    Out of [lo, hi] it is clamped when `clamp`, else refused; either way a 400 names `label`."""
    if raw is None or raw.strip() == "":
        return default
    text = raw.strip()
    digits = text[1:] if text[:1] in "+-" else text
    bounds = "" if lo <= -MAX_ID else f" of at least {lo}" if hi >= MAX_ID else f" from {lo} to {hi}"
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 30:
        raise BadRequest(f"invalid value for {label}: must be an integer{bounds}")
    n = int(text)
    if clamp:
        return min(max(n, lo), hi)
    if not lo <= n <= hi:
        raise BadRequest(f"invalid value for {label}: must be an integer{bounds}")
    return n
