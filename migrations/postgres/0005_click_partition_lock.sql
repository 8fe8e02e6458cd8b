-- Two writers storing the first clicks of a new UTC day (two instances, or a live
-- write beside a replay) both create that day's partition. CREATE TABLE IF NOT EXISTS
-- does not hold against a concurrent create: one of them fails with "relation
-- already exists" and its whole batch goes to the spool. Creation is serialised by a
-- transaction-level advisory lock, so the second caller waits for the first to commit
-- and then finds the partition there.
CREATE OR REPLACE FUNCTION kurz_ensure_click_partition(day DATE) RETURNS VOID
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('kurz_ensure_click_partition'));
    EXECUTE format(
        'CREATE TABLE IF NOT EXISTS %I PARTITION OF click_events FOR VALUES FROM (%L) TO (%L)',
        'click_events_' || to_char(day, 'YYYYMMDD'), day, day + 1);
END;
$$;
