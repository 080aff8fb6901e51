-- Upload URLs are single-use and size-bounded, and unused uploads are cleaned up.
-- max_size: the size given when the upload was created (POST .../upload {size}), the limit of its
--   PUT (the project-wide OTA_MAX_UPLOAD_SIZE applies as well); NULL when none was given.
-- status 'receiving': a PUT has claimed the upload and is storing its bytes (started_at); a second
--   PUT is refused. sha256 is recorded before the blob is renamed into place, so the cleanup of
--   expired uploads (which removes blobs no payload or upload refers to) never races a PUT.
ALTER TABLE uploads ADD COLUMN IF NOT EXISTS max_size bigint;
ALTER TABLE uploads ADD COLUMN IF NOT EXISTS started_at timestamptz;
ALTER TABLE uploads DROP CONSTRAINT IF EXISTS uploads_status_check;
ALTER TABLE uploads ADD CONSTRAINT uploads_status_check CHECK (status IN ('pending', 'receiving', 'complete'));
CREATE INDEX IF NOT EXISTS uploads_expires_at ON uploads (expires_at);
CREATE INDEX IF NOT EXISTS uploads_sha256 ON uploads (sha256);
CREATE INDEX IF NOT EXISTS payloads_sha256 ON payloads (sha256);
