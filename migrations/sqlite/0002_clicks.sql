-- Click analytics (DESIGN.md §5).
--
-- click_events holds one row per redirect, for retention-bounded drill-down; stats
-- queries never read it. click_rollups holds one row per link and hour: totals,
-- per-dimension counts (JSON) and a HyperLogLog of visitors, so a 30-day query reads
-- at most 720 rows. WITHOUT ROWID clusters rows by (code, hour): one range scan.

CREATE TABLE click_events (
    code          TEXT    NOT NULL,
    clicked_at    INTEGER NOT NULL,
    referrer      TEXT    NOT NULL,
    device        TEXT    NOT NULL,
    browser       TEXT    NOT NULL,
    os            TEXT    NOT NULL,
    is_bot        INTEGER NOT NULL,
    country       TEXT    NOT NULL,
    city          TEXT,
    -- Keyed hash of the client IP; the IP itself is never stored.
    visitor_hash  INTEGER NOT NULL
);
CREATE INDEX click_events_by_time ON click_events (clicked_at);

CREATE TABLE click_rollups (
    code      TEXT    NOT NULL,
    hour      INTEGER NOT NULL,
    clicks    INTEGER NOT NULL,
    bots      INTEGER NOT NULL,
    dims      TEXT    NOT NULL,
    visitors  BLOB    NOT NULL,
    PRIMARY KEY (code, hour)
) WITHOUT ROWID;

-- One HyperLogLog of human visitors per link and UTC day: a 30-day query merges 30
-- of these (plus the hours of the partial days at its ends), not 720 hourly ones.
CREATE TABLE click_visitors_daily (
    code      TEXT    NOT NULL,
    day       INTEGER NOT NULL,
    visitors  BLOB    NOT NULL,
    PRIMARY KEY (code, day)
);
