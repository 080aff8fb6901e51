-- Check-ins of one device (store/checkins.py). Ordering: reports of one device reach several workers, whose
-- flushes land in any order. reported_at is the receive time of the newest report written for a
-- (device, software type); a flushed report older than it no longer replaces the current version.
-- NULL on rows written before this migration: updated_at stands in for it.
ALTER TABLE device_software ADD COLUMN IF NOT EXISTS reported_at timestamptz;

-- The hardware version a device registered with (first reported, or provisioned) stays; the one
-- it reports, when different, is kept beside it: a poll answers for the hardware the device
-- reports, and "inspect" must say what the poll says. NULL while the two agree.
ALTER TABLE devices ADD COLUMN IF NOT EXISTS reported_hardware_version text;
