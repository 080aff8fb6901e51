"""The artifact blob store: content-addressed files, `<root>/<sha256[:2]>/<sha256>`, and a
precompressed `.gz` sidecar where compression pays (firmware rarely compresses).

An upload streams to a temporary file of its own under `<root>/tmp/` while hashing (`receive`)
and is renamed into place only when complete (`place`), so a reader sees the whole file or none
and two identical uploads never share a file. This process's temporary files are tracked while
in use and never removed; `remove_stale` removes the others once untouched for `stale_after`
seconds (those of a crashed or killed upload: an upload in progress keeps writing to its file).

A file-system failure raises `StorageFailed` (`StorageFull` when out of space or quota): a
bare OSError would read as a database outage to the HTTP layer.
"""
from __future__ import annotations

import asyncio
import errno
import gzip
import hashlib
import logging
import os
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from gateway.domain.errors import StorageFailed, StorageFull, TooLarge

CHUNK = 256 * 1024
TMP_PREFIX = "upload-"
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StoredBlob:
    size: int
    sha256: str
    md5: str
    sha1: str


@dataclass(frozen=True, slots=True)
class Received:
    """An upload's bytes, hashed and synced to a temporary file, not yet in the store."""
    blob: StoredBlob
    tmp: Path
    gz: Path | None  # its compressed sidecar, where that pays


@contextmanager
def storage_errors(doing: str, path):
    """Turn a file-system error while `doing` into StorageFailed / StorageFull."""
    try:
        yield
    except OSError as e:
        log.error("artifact storage failed %s (%s): %s", doing, path, e)
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StorageFull(f"storage failed while {doing}: no space left on the artifact storage") from e
        raise StorageFailed(f"storage failed while {doing}: {e.strerror or type(e).__name__}") from e


class BlobStore:
    def __init__(self, root: str | os.PathLike, *, stale_after: float = 3600.0):
        self.root = Path(root)
        self.tmp = self.root / "tmp"
        self.stale_after = stale_after
        self.active: set[Path] = set()  # temporary files of this process's uploads in progress
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.remove_stale(stale_after)
        # once, at start: the sidecars being compressed that earlier releases wrote next to their blob
        self._remove_old(self.root.glob("??/*.gz.tmp"), time.time() - stale_after, None)

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256

    def remove_stale(self, older_than: float | None = None, *, limit: int | None = 1000) -> int:
        """Remove temporary files untouched for `older_than` seconds (default `stale_after`),
        at most `limit`, never one of an upload in progress in this process."""
        cutoff = time.time() - (self.stale_after if older_than is None else older_than)
        return self._remove_old(self.tmp.glob(TMP_PREFIX + "*"), cutoff, limit)

    def _remove_old(self, paths, cutoff: float, limit: int | None) -> int:
        removed = 0
        for f in paths:
            if limit is not None and removed >= limit:
                break
            if f in self.active:
                continue
            try:
                if f.stat().st_mtime <= cutoff:
                    f.unlink()
                    removed += 1
            except FileNotFoundError:
                pass
            except OSError as e:
                log.warning("cannot remove the stale temporary file %s: %s", f, e)
        return removed

    async def receive(self, content, max_size: int, too_large: str) -> Received:
        """Stream an aiohttp body to a temporary file, hashing it; TooLarge(`too_large`) past
        `max_size` bytes. `discard` the result once placed (or not)."""
        hashes = (hashlib.sha256(), hashlib.md5(), hashlib.sha1())
        size = 0
        with storage_errors("creating a temporary file", self.tmp):
            fd, name = tempfile.mkstemp(dir=self.tmp, prefix=TMP_PREFIX)
        tmp = Path(name)
        self.active.add(tmp)
        try:
            try:
                async for chunk in content.iter_chunked(CHUNK):
                    size += len(chunk)
                    if size > max_size:
                        raise TooLarge(too_large)
                    for h in hashes:
                        h.update(chunk)
                    _write(fd, chunk, tmp)
                with storage_errors("writing the upload", tmp):
                    os.fsync(fd)
            finally:
                with storage_errors("writing the upload", tmp):
                    os.close(fd)
            blob = StoredBlob(size, *(h.hexdigest() for h in hashes))
            gz = None
            with storage_errors("looking up the blob", self.tmp):
                stored = self.path(blob.sha256).exists()
            if not stored:  # else its sidecar was made (or found not worth it) already
                gz = await asyncio.get_running_loop().run_in_executor(None, self._compress, tmp)
                if gz is not None:
                    self.active.add(gz)
            return Received(blob, tmp, gz)
        except BaseException:
            self._drop(tmp)
            raise

    def _compress(self, src: Path, *, min_saving: float = 0.1, max_size: int = 256 * 1024 * 1024) -> Path | None:
        """A gzip sidecar for `src` in a temporary file, if it saves at least `min_saving`. The
        sidecar is optional: a failure to write it is logged, and the upload goes on."""
        gz = None
        try:
            size = src.stat().st_size
            if size < 4096 or size > max_size:
                return None
            fd, name = tempfile.mkstemp(dir=self.tmp, prefix=TMP_PREFIX, suffix=".gz")
            gz = Path(name)
            with open(src, "rb") as f, os.fdopen(fd, "wb") as raw:
                with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0) as dst:
                    while chunk := f.read(CHUNK):
                        dst.write(chunk)
                raw.flush()
                os.fsync(raw.fileno())
            if gz.stat().st_size <= size * (1 - min_saving):
                return gz
        except OSError as e:
            log.warning("no gzip sidecar for %s: %s", src, e)
        if gz is not None:
            self._drop(gz)
        return None

    def place(self, r: Received) -> None:
        """Rename a received upload (and its sidecar) into the store: atomic for readers."""
        final = self.path(r.blob.sha256)
        with storage_errors("storing the upload", final):
            final.parent.mkdir(exist_ok=True)
            os.chmod(r.tmp, 0o644)
            os.replace(r.tmp, final)
            if r.gz is not None:
                os.chmod(r.gz, 0o644)
                os.replace(r.gz, final.with_name(final.name + ".gz"))
            dir_fd = os.open(final.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)  # the renames outlive a crash, as the database's record of them does
            finally:
                os.close(dir_fd)

    def discard(self, r: Received) -> None:
        """Forget a received upload's temporary files (removing those not placed)."""
        self._drop(r.tmp, *([r.gz] if r.gz is not None else []))

    def _drop(self, *paths: Path) -> None:
        for p in paths:
            try:
                p.unlink(missing_ok=True)
            except OSError as e:  # left to remove_stale
                log.warning("cannot remove the temporary file %s: %s", p, e)
            self.active.discard(p)

    def remove(self, sha256: str) -> bool:
        """Delete a blob and its sidecar; whether the blob was there."""
        final = self.path(sha256)
        with storage_errors("removing a blob", final):
            final.with_name(final.name + ".gz").unlink(missing_ok=True)
            try:
                final.unlink()
                return True
            except FileNotFoundError:
                return False


def _write(fd: int, data: bytes, path: Path) -> None:
    with storage_errors("writing the upload", path):
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
