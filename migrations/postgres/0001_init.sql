-- kurz schema for PostgreSQL (production).
--
-- Differences from the seed's schema, and why:
--
-- * The seed range-partitions `urls` by created_at *and* declares UNIQUE(short_code).
--   PostgreSQL cannot do both: a unique constraint on a partitioned table must
--   include the partition key, so UNIQUE(short_code) would silently become
--   UNIQUE(short_code, created_at) and stop guaranteeing unique codes. `links` is
--   therefore partitioned by HASH(code): the primary key on `code` stays a real
--   uniqueness guarantee, a lookup by code prunes to one partition and one index
--   probe (the O(1) the seed's HASH index was after, with B-tree range scans still
--   possible), and each partition stays small enough to vacuum and reindex alone.
--   Old data is archived by `kurz_archive_links()` below: it copies long-expired or
--   deleted links into `links_archive` (range-partitioned by created_at, so whole
--   months can be detached and dropped or shipped to cold storage) and leaves a
--   blank tombstone row behind, so the code is still never reissued.
-- * The seed stores `users.api_key` in clear. We store only a SHA-256 of the key.
-- * The seed's `kgs_keys` pool table (one row per pre-generated key, an
--   `is_used` flag, a "used keys" set) is replaced by one counter row that instances
--   lease blocks from (DESIGN.md §2): no pool to refill, no per-key write.
-- * `click_events` is range-partitioned by day, as the seed says, so retention is a
--   `DROP TABLE` of a partition instead of a slow DELETE. It has no primary key
--   (the seed's BIGSERIAL id would need clicked_at in the key and buys nothing).

CREATE TABLE users (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email         TEXT        NOT NULL UNIQUE,
    api_key_hash  TEXT        NOT NULL UNIQUE,
    tier          TEXT        NOT NULL CHECK (tier IN ('free', 'pro', 'enterprise', 'admin')),
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Ids are unique across partitions because they all draw from this one sequence;
-- they only order links for the list endpoint's cursor.
CREATE SEQUENCE links_id_seq;

CREATE TABLE links (
    code              TEXT        NOT NULL,
    id                BIGINT      NOT NULL DEFAULT nextval('links_id_seq'),
    original_url      TEXT        NOT NULL,
    owner_id          BIGINT      REFERENCES users (id),
    created_at        TIMESTAMPTZ NOT NULL,
    expires_at        TIMESTAMPTZ,
    is_active         BOOLEAN     NOT NULL DEFAULT true,
    redirect_type     SMALLINT    NOT NULL DEFAULT 302 CHECK (redirect_type IN (301, 302)),
    metadata          JSONB       NOT NULL DEFAULT '{}',
    click_count       BIGINT      NOT NULL DEFAULT 0,
    last_accessed_at  TIMESTAMPTZ,
    -- Set on delete: the row stays as a tombstone so the code is never reissued.
    deleted_at        TIMESTAMPTZ,
    PRIMARY KEY (code)
) PARTITION BY HASH (code);

CREATE TABLE links_p0 PARTITION OF links FOR VALUES WITH (MODULUS 8, REMAINDER 0);
CREATE TABLE links_p1 PARTITION OF links FOR VALUES WITH (MODULUS 8, REMAINDER 1);
CREATE TABLE links_p2 PARTITION OF links FOR VALUES WITH (MODULUS 8, REMAINDER 2);
CREATE TABLE links_p3 PARTITION OF links FOR VALUES WITH (MODULUS 8, REMAINDER 3);
CREATE TABLE links_p4 PARTITION OF links FOR VALUES WITH (MODULUS 8, REMAINDER 4);
CREATE TABLE links_p5 PARTITION OF links FOR VALUES WITH (MODULUS 8, REMAINDER 5);
CREATE TABLE links_p6 PARTITION OF links FOR VALUES WITH (MODULUS 8, REMAINDER 6);
CREATE TABLE links_p7 PARTITION OF links FOR VALUES WITH (MODULUS 8, REMAINDER 7);

CREATE INDEX links_by_owner ON links (owner_id, id) WHERE deleted_at IS NULL;
CREATE INDEX links_by_expiry ON links (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE links_archive (
    code              TEXT        NOT NULL,
    id                BIGINT      NOT NULL,
    original_url      TEXT        NOT NULL,
    owner_id          BIGINT,
    created_at        TIMESTAMPTZ NOT NULL,
    expires_at        TIMESTAMPTZ,
    redirect_type     SMALLINT    NOT NULL,
    metadata          JSONB       NOT NULL,
    click_count       BIGINT      NOT NULL,
    last_accessed_at  TIMESTAMPTZ,
    archived_at       TIMESTAMPTZ NOT NULL DEFAULT now()
) PARTITION BY RANGE (created_at);
-- Operators add monthly partitions (and detach old ones); the default catches the rest.
CREATE TABLE links_archive_default PARTITION OF links_archive DEFAULT;

-- Moves links that expired before `before` into the archive and leaves tombstones
-- (blank rows with deleted_at set) so their codes stay taken. Returns how many moved.
-- All parts of one statement see one snapshot: the copy reads the rows as they were.
CREATE FUNCTION kurz_archive_links(before TIMESTAMPTZ) RETURNS BIGINT
LANGUAGE sql AS $$
    WITH old AS (
        SELECT code FROM links WHERE expires_at < before AND deleted_at IS NULL FOR UPDATE
    ), copied AS (
        INSERT INTO links_archive (code, id, original_url, owner_id, created_at, expires_at,
                                   redirect_type, metadata, click_count, last_accessed_at)
        SELECT l.code, l.id, l.original_url, l.owner_id, l.created_at, l.expires_at,
               l.redirect_type, l.metadata, l.click_count, l.last_accessed_at
        FROM links l JOIN old USING (code)
        RETURNING code
    ), blanked AS (
        UPDATE links SET original_url = '', metadata = '{}', is_active = false, deleted_at = now()
        WHERE code IN (SELECT code FROM copied)
        RETURNING code
    )
    SELECT count(*) FROM blanked;
$$;

CREATE TABLE kgs_counter (
    id          SMALLINT PRIMARY KEY CHECK (id = 1),
    next_value  BIGINT   NOT NULL
);
INSERT INTO kgs_counter (id, next_value) VALUES (1, 0);

CREATE TABLE settings (
    name   TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);

CREATE TABLE idempotency_keys (
    key           TEXT        PRIMARY KEY,
    request_hash  TEXT        NOT NULL,
    status        SMALLINT,
    body          BYTEA,
    created_at    TIMESTAMPTZ NOT NULL
);
CREATE INDEX idempotency_by_age ON idempotency_keys (created_at);

CREATE TABLE click_events (
    code          TEXT        NOT NULL,
    clicked_at    TIMESTAMPTZ NOT NULL,
    referrer      TEXT        NOT NULL,
    device        TEXT        NOT NULL,
    browser       TEXT        NOT NULL,
    os            TEXT        NOT NULL,
    is_bot        BOOLEAN     NOT NULL,
    country       TEXT,
    city          TEXT,
    -- Keyed hash of the client IP; the IP itself is never stored.
    visitor_hash  BIGINT      NOT NULL
) PARTITION BY RANGE (clicked_at);
CREATE INDEX click_events_by_code ON click_events (code, clicked_at);

-- Creates the partition of `click_events` for one UTC day if it is missing.
CREATE FUNCTION kurz_ensure_click_partition(day DATE) RETURNS VOID
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format(
        'CREATE TABLE IF NOT EXISTS %I PARTITION OF click_events FOR VALUES FROM (%L) TO (%L)',
        'click_events_' || to_char(day, 'YYYYMMDD'), day, day + 1);
END;
$$;
