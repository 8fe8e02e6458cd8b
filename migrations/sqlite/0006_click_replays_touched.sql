-- When each click_replays row was last written (milliseconds). Rows are one per click
-- writer start, per failed write and per spool generation, and are needed only while
-- a spooled write or replay under that name may still be retried:
-- Store::purge_click_replays deletes those untouched for longer than any spool is
-- expected to wait. Rows from before this migration count as written now.
ALTER TABLE click_replays ADD COLUMN touched_at INTEGER NOT NULL DEFAULT 0;
UPDATE click_replays SET touched_at = CAST(strftime('%s', 'now') AS INTEGER) * 1000;
