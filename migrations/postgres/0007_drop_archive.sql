-- `kurz_archive_links()` (0001) was never scheduled by kurz: nothing called it, so it
-- is removed rather than kept as an untested promise. Deleted links stay as
-- tombstones in `links` (their codes are never reissued), which is all kurz needs.
-- The archive table goes with it unless an operator ran the function by hand and it
-- holds rows: those are kept, untouched.
DROP FUNCTION IF EXISTS kurz_archive_links(TIMESTAMPTZ);
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM links_archive) THEN
        DROP TABLE links_archive;
    END IF;
END
$$;
