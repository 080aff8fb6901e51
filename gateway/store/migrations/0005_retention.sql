-- Retention (services/retention.py, store/retention.py): the version history, DDI feedback and
-- the audit log are pruned past their settings' age (OTA_RETAIN_*_DAYS), once per period across
-- every gateway process and host, in bounded batches.

-- One row per periodic job: a process runs a job only after claiming its period here, with an
-- UPDATE that matches only while the last claim is older than the period (database clock; two
-- processes claiming at once queue on the row lock and the second finds it taken). finished_at and
-- result: how the last run ended (rows examined and deleted, whether it got through its backlog).
CREATE TABLE IF NOT EXISTS periodic_jobs (
    job          text PRIMARY KEY,
    last_run     timestamptz NOT NULL,
    last_by      text NOT NULL DEFAULT '',
    finished_at  timestamptz,
    result       jsonb
);

-- A B-tree on (time, id) per pruned table, not BRIN. BRIN fits a table that is only appended to:
-- rows arrive in time order, so each range of pages holds a narrow span of times and a summary of
-- a few bytes per range excludes most of the table, at almost no cost per insert. Retention ends
-- that: VACUUM hands the pages pruning emptied to new rows, and a BRIN range's summary only ever
-- widens (new rows widen it; deletes and VACUUM never narrow it again), so within one retention
-- period every range spans old and new times and matches "older than the cutoff": each run would
-- read the whole table. The rows kept on purpose (a device's newest version, an open action's
-- feedback) pin old times in their ranges for good. BRIN also returns no order, so a batch of
-- 10,000 would re-read every matching range. The B-tree gives the oldest rows in order: a batch
-- reads what it deletes or keeps and nothing else, and walks on from where the last stopped
-- ((time, id) > the last row's). It costs one more index insert per row (these tables are written
-- on a version change, a DDI feedback or a management write, never on a plain poll) and ~30 bytes
-- a row. Building them locks the table against writes for the build: on a large database create
-- them beforehand with CREATE INDEX CONCURRENTLY under these names (IF NOT EXISTS then skips them).
CREATE INDEX IF NOT EXISTS device_version_history_seen_at ON device_version_history (seen_at, id);
CREATE INDEX IF NOT EXISTS device_action_feedback_received_at ON device_action_feedback (received_at, id);
CREATE INDEX IF NOT EXISTS audit_log_at ON audit_log (at, id);
