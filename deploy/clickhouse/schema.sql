-- ClickHouse schema for kurz click events (the `kurz.clicks` Kafka topic).
--
-- Three objects:
--   kurz_clicks            raw events, one row per message, kept for ad-hoc queries
--   kurz_clicks_hourly     hourly rollup, the only thing stats.sql reads
--   kurz_clicks_hourly_mv  fills the rollup from every insert into kurz_clicks.
--
-- Rows reach kurz_clicks from the Kafka engine table in kafka.sql (production) or
-- from a plain INSERT ... FORMAT JSONEachRow (check_with_chdb.py). This file has no
-- Kafka engine, so it runs as is in chdb and in clickhouse-local.
--
-- The columns are the fields of kurz's ClickEvent JSON (src/analytics/event.rs), a
-- public contract: a JSONEachRow message maps onto kurz_clicks column for column.


-- Raw events.
CREATE TABLE IF NOT EXISTS kurz_clicks
(
    short_code   String,                      -- high cardinality: a plain String
    -- kurz writes RFC 3339 UTC with up to 9 fractional digits. Milliseconds are
    -- plenty for analytics (extra digits are dropped when parsed). Inserts must
    -- parse it best-effort (date_time_input_format = 'best_effort'): the server's
    -- default 'basic' parser rejects the 'T' ... 'Z' form.
    clicked_at   DateTime64(3, 'UTC'),
    -- Dimensions with few distinct values: LowCardinality stores them dictionary-
    -- encoded, smaller and faster to group by than String.
    referrer     LowCardinality(String),      -- referring host, or 'direct'
    device       LowCardinality(String),      -- mobile | desktop | tablet | other
    browser      LowCardinality(String),
    os           LowCardinality(String),
    is_bot       Bool,
    country      LowCardinality(String),      -- ISO 3166 alpha-2, or 'unknown'
    -- kurz omits `city` when it does not know it: an omitted field reads as NULL.
    city         LowCardinality(Nullable(String)),
    -- Keyed SipHash of the client IP: a full u64, often above 2^63, so UInt64
    -- (Int64 would overflow on insert).
    visitor_hash UInt64
)
ENGINE = MergeTree
-- Monthly partitions: retention drops whole months cheaply, and a stats range
-- touches few partitions.
PARTITION BY toYYYYMM(clicked_at)
-- Every query is per link over a time range: (short_code, clicked_at) makes that a
-- contiguous range scan.
ORDER BY (short_code, clicked_at)
-- Raw rows are only for ad-hoc digging: the rollup answers stats. To keep raw
-- events for a limited time only, uncomment (the rollup is unaffected):
-- TTL toDateTime(clicked_at) + INTERVAL 90 DAY DELETE
;


-- Hourly rollup, one row per (link, hour, bot flag, dimension combination).
--
-- kurz's own rollups are hourly too (src/analytics/rollup.rs), and its stats ranges
-- are widened to whole hours, so this table answers the same questions with the
-- same boundaries. A 30-day query reads a few rows per link-hour, whatever the
-- click volume.
--
-- is_bot is part of the key, not a filter: bot clicks are counted apart (`bots`),
-- every other figure counts humans only, and both come from this one table.
-- city is left out: kurz reports no city breakdown, and it would multiply rows.
CREATE TABLE IF NOT EXISTS kurz_clicks_hourly
(
    short_code String,
    hour       DateTime('UTC'),
    is_bot     Bool,
    country    LowCardinality(String),
    referrer   LowCardinality(String),
    device     LowCardinality(String),
    browser    LowCardinality(String),
    os         LowCardinality(String),
    -- A plain count merges by summing. SimpleAggregateFunction stores it as a bare
    -- UInt64 (no state), readable with sum() before or after background merges.
    clicks     SimpleAggregateFunction(sum, UInt64),
    -- Unique visitors must merge across rows (hours, dimensions), which a count
    -- cannot: keep a mergeable sketch. uniqCombined64 is exact for small sets, an
    -- HLL (2^17 cells, error well under 1 %) beyond, a few bytes for a link-hour with few
    -- visitors, and hashes to 64 bits so it does not saturate at billions the way
    -- the 32-bit uniqCombined does. Like kurz's own HLL it is an estimate: the two
    -- agree within ~2 %, not exactly.
    visitors   AggregateFunction(uniqCombined64, UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
-- All non-aggregate columns form the key: background merges collapse rows with
-- equal keys, summing clicks and merging sketches. Merges are eventual, so queries
-- must still aggregate (sum / uniqCombined64Merge) rather than read rows as final.
ORDER BY (short_code, hour, is_bot, country, referrer, device, browser, os)
-- The rollup is small. If the raw TTL is on, keep the rollup longer, e.g.:
-- TTL hour + INTERVAL 2 YEAR DELETE
;


-- Fills the rollup. A materialized view is an insert trigger: each block inserted
-- into kurz_clicks (a Kafka batch, or one INSERT) is aggregated and appended to
-- kurz_clicks_hourly. Rows inserted before the view existed are not included:
-- backfill with the same SELECT as an INSERT INTO kurz_clicks_hourly.
--
-- At-least-once delivery: a message delivered twice is counted twice, here and in
-- kurz_clicks. Duplicates only follow a broker failure and are rare. Where exact
-- counts matter, dedupe before insert (check_with_chdb.py --dedupe does).
CREATE MATERIALIZED VIEW IF NOT EXISTS kurz_clicks_hourly_mv TO kurz_clicks_hourly AS
SELECT
    short_code,
    toStartOfHour(clicked_at) AS hour,
    is_bot,
    country,
    referrer,
    device,
    browser,
    os,
    toUInt64(count())                    AS clicks,
    uniqCombined64State(visitor_hash)    AS visitors
FROM kurz_clicks
GROUP BY short_code, hour, is_bot, country, referrer, device, browser, os;
