-- Each link's click counters move out of its `links` row into a table of their own,
-- keyed by code. `links` is keyed by id, in creation order, so a click write that
-- adds to a run of codes (a part of a held write, in code order) touched a page of
-- `links` per code, and rewrote most of the table once per part: in WAL mode every
-- page a transaction changes is written again in full. Keyed by code, the same run
-- of codes changes a few adjacent pages. A link without a row here has no clicks.
CREATE TABLE link_clicks (
    code              TEXT    PRIMARY KEY,
    click_count       INTEGER NOT NULL,
    last_accessed_at  INTEGER
) WITHOUT ROWID;

INSERT INTO link_clicks (code, click_count, last_accessed_at)
SELECT code, click_count, last_accessed_at FROM links
WHERE click_count <> 0 OR last_accessed_at IS NOT NULL;

ALTER TABLE links DROP COLUMN click_count;
ALTER TABLE links DROP COLUMN last_accessed_at;
