"""The REST API as the command line sees it: `Client` (JSON calls with the org token, file
uploads to signed URLs), `CliError` (a message for the user) and `Pending` (the server filed an
approval request instead of making the change)."""
from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from gateway.progress import Progress


class CliError(Exception):
    pass


class Pending(Exception):
    """The server filed an approval request instead of making the change (HTTP 202)."""

    def __init__(self, request: dict):
        super().__init__(request)
        self.request = request


class Client:
    def __init__(self, url: str, token: str | None, org: str | None, project: str | None):
        self.url = url.rstrip("/")
        self.token = token
        self.org = org
        self.project = project

    def project_path(self, suffix: str = "") -> str:
        if not self.org or not self.project:
            raise CliError("--org and --project (or OTA_ORG / OTA_PROJECT) are required")
        return f"/api/v0/organizations/{urllib.parse.quote(self.org)}/projects/{urllib.parse.quote(self.project)}" \
               + suffix

    def call(self, method: str, path: str, body: Any = None, query: dict | None = None) -> Any:
        if not self.token:
            raise CliError("--token (or OTA_TOKEN) is required")
        url = self.url + path
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method, headers={
            "Authorization": f"Bearer {self.token}", "Content-Type": "application/json",
            "User-Agent": "ota-gateway-cli"})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                raw = r.read()
                status = r.status
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                message = json.loads(raw)["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = raw.decode(errors="replace")[:300] or e.reason
            raise CliError(f"{message} (HTTP {e.code})") from None
        except urllib.error.URLError as e:
            raise CliError(f"cannot reach {self.url}: {e.reason}") from None
        result = json.loads(raw)["data"] if raw else None
        if status == 202 and isinstance(result, dict):
            raise Pending(result)  # nothing changed yet: say so instead of what would have changed
        return result

    def put_file(self, url: str, path: str, progress: Progress) -> None:
        """Stream a file to a signed upload URL (no Authorization: the URL carries it)."""
        size = os.path.getsize(path)

        def chunks():
            with open(path, "rb") as f:
                while chunk := f.read(256 * 1024):
                    progress.update(len(chunk))
                    yield chunk

        req = urllib.request.Request(url, data=chunks(), method="PUT", headers={
            "Content-Length": str(size), "Content-Type": "application/octet-stream", "User-Agent": "ota-gateway-cli"})
        try:
            with urllib.request.urlopen(req, timeout=3600) as r:
                r.read()
        except urllib.error.HTTPError as e:
            raise CliError(f"upload failed (HTTP {e.code}): {e.read().decode(errors='replace')[:300]}") from None
        except urllib.error.URLError as e:
            raise CliError(f"cannot reach the upload URL: {e.reason}") from None
        finally:
            progress.close()
