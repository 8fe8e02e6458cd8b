-- How far each spool generation has been replayed into this store, written in the
-- same transaction as the replayed clicks: a replay repeated after a crash (between
-- that commit and the spool's own position file) is recognised and skipped instead of
-- counted twice. One small row per generation (a spool starts a new one whenever it
-- has been replayed to the end and truncated).
CREATE TABLE click_replays (
    spool    TEXT    PRIMARY KEY,
    through  INTEGER NOT NULL
);
