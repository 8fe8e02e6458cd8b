-- kurz schema for SQLite (the embedded default).
--
-- Timestamps are INTEGER milliseconds since the Unix epoch: compact, index-friendly
-- and compared numerically, unlike SQLite's untyped text dates.

CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    email         TEXT    NOT NULL UNIQUE,
    -- SHA-256 (hex) of the API key. The key itself is shown once and never stored;
    -- keys carry >= 128 random bits, so a fast hash is enough (no password stretching).
    api_key_hash  TEXT    NOT NULL UNIQUE,
    tier          TEXT    NOT NULL CHECK (tier IN ('free', 'pro', 'enterprise', 'admin')),
    created_at    INTEGER NOT NULL
);

-- One row per code ever handed out. A deleted link keeps its row (data blanked,
-- deleted_at set) so that UNIQUE(code) also guarantees a code is never reissued.
-- AUTOINCREMENT makes ids strictly increasing and never reused: the list endpoint's
-- cursor relies on that.
CREATE TABLE links (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    code              TEXT    NOT NULL UNIQUE,
    original_url      TEXT    NOT NULL,
    owner_id          INTEGER REFERENCES users (id),
    created_at        INTEGER NOT NULL,
    expires_at        INTEGER,
    is_active         INTEGER NOT NULL DEFAULT 1,
    redirect_type     INTEGER NOT NULL DEFAULT 302 CHECK (redirect_type IN (301, 302)),
    metadata          TEXT    NOT NULL DEFAULT '{}',
    click_count       INTEGER NOT NULL DEFAULT 0,
    last_accessed_at  INTEGER,
    deleted_at        INTEGER
);
CREATE INDEX links_by_owner ON links (owner_id, id) WHERE deleted_at IS NULL;
CREATE INDEX links_by_expiry ON links (expires_at) WHERE expires_at IS NOT NULL;

-- The key generator's counter (DESIGN.md §2): instances lease blocks from it.
CREATE TABLE kgs_counter (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    next_value  INTEGER NOT NULL
);
INSERT INTO kgs_counter (id, next_value) VALUES (1, 0);

-- Values that must be identical across restarts and instances (the KGS key).
CREATE TABLE settings (
    name   TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);

-- X-Idempotency-Key records: the first response, replayed for 24 h. status IS NULL
-- while the first request is still running.
CREATE TABLE idempotency_keys (
    key           TEXT    PRIMARY KEY,
    request_hash  TEXT    NOT NULL,
    status        INTEGER,
    body          BLOB,
    created_at    INTEGER NOT NULL
);
CREATE INDEX idempotency_by_age ON idempotency_keys (created_at);
