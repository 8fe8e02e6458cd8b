-- A counter every committed change or delete of a link moves on, whichever process
-- made it. The cache's refresh reads it once per round: a hot link loaded after the
-- counter last moved is the store's copy still, and is kept without reading it again.
-- Creates do not move it: a new link cannot be in the cache as found.
CREATE TABLE links_version (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    n   INTEGER NOT NULL
);
INSERT INTO links_version (id, n) VALUES (1, 0);

CREATE TRIGGER links_version_on_update AFTER UPDATE ON links
BEGIN
    UPDATE links_version SET n = n + 1 WHERE id = 1;
END;

CREATE TRIGGER links_version_on_delete AFTER DELETE ON links
BEGIN
    UPDATE links_version SET n = n + 1 WHERE id = 1;
END;
