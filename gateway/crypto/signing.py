"""Signed, expiring, host-independent URLs for downloads and upload targets.

The signature binds the path and the expiry, never the host, so a device-side proxy that swaps
the host keeps links valid. Expiries are rounded up to a bucket so that the same URL can be
reused (and cached as response bytes) for many polls.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import time


class UrlSigner:
    def __init__(self, secret: bytes, public_url: str, *, ttl: int = 6 * 3600, bucket: int = 600):
        self._secret = secret
        self.public_url = public_url.rstrip("/")
        self.ttl = ttl
        self.bucket = bucket

    def _sig(self, path: str, expires: int) -> str:
        mac = hmac.new(self._secret, f"{path}\n{expires}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac[:18]).decode()

    def expiry(self, now: float | None = None) -> int:
        """Expiry for a URL handed out now: at least `ttl` away, rounded up to the bucket."""
        now = time.time() if now is None else now
        return (int(now + self.ttl) // self.bucket + 1) * self.bucket

    def sign(self, path: str, expires: int | None = None) -> str:
        """Absolute signed URL for `path` (already URL-encoded)."""
        expires = self.expiry() if expires is None else expires
        return f"{self.public_url}{path}?e={expires}&s={self._sig(path, expires)}"

    def verify(self, path: str, expires: str | None, sig: str | None, now: float | None = None) -> bool:
        # isascii: str.isdigit() also accepts e.g. "²", which int() refuses; 20 digits is past
        # any real expiry and keeps int() cheap
        if not expires or not sig or not expires.isascii() or not expires.isdigit() or len(expires) > 20 \
                or not sig.isascii():
            return False
        exp = int(expires)
        if exp < (time.time() if now is None else now):
            return False
        return hmac.compare_digest(self._sig(path, exp), sig)
