-- Production feed: kurz's Kafka click topic -> kurz_clicks (schema.sql).
--
-- Run schema.sql first, then this file, on a ClickHouse server with Kafka access.
-- NOT run by the tests: in-process ClickHouse cannot consume a topic (chdb 4.4.0
-- accepts the Kafka table but fails to create the streaming view on it, with
-- "Shutdown was called", even with a broker up), so check_with_chdb.py inserts the
-- same JSON lines directly into kurz_clicks instead. Everything downstream of
-- kurz_clicks (rollup view, stats.sql) is the same code path.
--
-- Replace the placeholders before running:
--   <<BROKERS>>  kurz's KURZ_KAFKA_BROKERS, e.g. 'kafka1:9092,kafka2:9092'
--   <<GROUP>>    a consumer group of your own, e.g. 'clickhouse-kurz-clicks'. Use the
--                same group on every replica/shard that should share the work
-- The topic is kurz's KURZ_KAFKA_TOPIC (default 'kurz.clicks'): change it below if
-- you changed it there.
--
-- Each message: key = short code, value = one ClickEvent as JSON (one JSONEachRow
-- row), e.g.
--   {"short_code":"abc1234","clicked_at":"2026-11-22T02:01:54.123456789Z",
--    "referrer":"twitter.com","device":"mobile","browser":"Mobile Safari","os":"iOS",
--    "is_bot":false,"country":"US","city":"Osaka","visitor_hash":12345678901234567890}
-- (`city` is omitted when unknown and then reads as NULL.)


-- The consumer. A Kafka engine table stores nothing: rows read from it are gone for
-- every other reader, so only the materialized view below should read it.
CREATE TABLE IF NOT EXISTS kurz_clicks_queue
(
    short_code   String,
    clicked_at   DateTime64(3, 'UTC'),
    referrer     String,
    device       String,
    browser      String,
    os           String,
    is_bot       Bool,
    country      String,
    city         Nullable(String),
    visitor_hash UInt64
)
ENGINE = Kafka
SETTINGS
    kafka_broker_list = '<<BROKERS>>',          -- PLACEHOLDER: host:port,host:port
    kafka_topic_list  = 'kurz.clicks',          -- kurz's KURZ_KAFKA_TOPIC
    kafka_group_name  = '<<GROUP>>',            -- PLACEHOLDER: consumer group
    kafka_format      = 'JSONEachRow',
    -- At most the topic's partition count (kurz creates it with
    -- KURZ_KAFKA_PARTITIONS, default 6): more consumers would sit idle.
    kafka_num_consumers = 1,
    -- kurz writes RFC 3339 ("2026-11-22T02:01:54.123456789Z"): the default 'basic'
    -- DateTime parser rejects the 'T' and 'Z', so parse best-effort.
    date_time_input_format = 'best_effort',
    -- Fields a future kurz may add must not stop the feed.
    input_format_skip_unknown_fields = 1;


-- Moves every consumed batch into kurz_clicks. kurz_clicks_hourly_mv (schema.sql)
-- then rolls it up. Offsets are committed after the insert, so a crash re-reads
-- (at-least-once, like kurz's producer): an event may arrive twice, never not at all.
CREATE MATERIALIZED VIEW IF NOT EXISTS kurz_clicks_queue_mv TO kurz_clicks AS
SELECT
    short_code,
    clicked_at,
    referrer,
    device,
    browser,
    os,
    is_bot,
    country,
    city,
    visitor_hash
FROM kurz_clicks_queue;
