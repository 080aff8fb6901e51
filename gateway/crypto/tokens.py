"""Secrets: generation and one-way storage. Nothing here ever logs a secret."""
from __future__ import annotations

import hashlib
import hmac
import secrets


def hash_token(token: str) -> str:
    """sha256 hex of a machine-generated token (high entropy, so no salt or stretching needed)."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_org_token() -> str:
    return "oat_" + secrets.token_urlsafe(30)


def new_project_key() -> str:
    return secrets.token_hex(16)


def hash_user_secret(secret: str, *, salt: bytes | None = None) -> str:
    """Salted scrypt for secrets a person may have chosen."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=2**14, r=8, p=1, dklen=32)
    return f"scrypt${salt.hex()}${digest.hex()}"


def unmatchable_user_secret_hash() -> str:
    """A stored-hash look-alike (random salt, random digest) that no secret matches: verifying
    against it costs exactly what verifying against a real one does (for unknown accounts)."""
    return f"scrypt${secrets.token_hex(16)}${secrets.token_hex(32)}"


def verify_user_secret(secret: str, stored: str) -> bool:
    try:
        scheme, salt_hex, _ = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    return hmac.compare_digest(hash_user_secret(secret, salt=bytes.fromhex(salt_hex)), stored)
