-- The figures kurz's stats API answers, from the hourly rollup (schema.sql).
--
-- Query parameters (clickhouse-client --param_code=... / HTTP param_code=... / chdb params=):
--   {code:String}    the short code
--   {start:DateTime} range start, widened to the start of its hour (as kurz does)
--   {end:DateTime}   range end, exclusive
-- DateTime parameters are read in the session time zone. kurz speaks UTC: pass UTC
-- times and run with session_timezone = 'UTC' (check_with_chdb.py does).
--
-- Counting rules are kurz's: bots are counted apart. total_clicks, unique_visitors
-- and every breakdown count human clicks (is_bot = false) only. `bots` counts the
-- bot clicks.
--
-- Rows of the rollup merge in the background whenever ClickHouse gets to it, so
-- every query aggregates (sum, uniqCombined64Merge) instead of reading rows as if
-- merged: no FINAL needed.
--
-- Breakdowns are ordered like kurz's (count descending, then value). kurz's API
-- cuts each list to its top 100, these return every value.
--
-- Each query is preceded by a `-- name:` line: check_with_chdb.py runs them by name.

-- name: totals
SELECT
    sumIf(clicks, NOT is_bot)                      AS total_clicks,
    sumIf(clicks, is_bot)                          AS bots,
    -- One sketch merged over every human row of the range: a visitor seen in
    -- several hours or with several browsers counts once.
    uniqCombined64MergeIf(visitors, NOT is_bot)    AS unique_visitors
FROM kurz_clicks_hourly
WHERE short_code = {code:String}
  AND hour >= toStartOfHour({start:DateTime})
  AND hour < {end:DateTime};

-- name: countries
SELECT country AS value, sum(clicks) AS clicks
FROM kurz_clicks_hourly
WHERE short_code = {code:String}
  AND hour >= toStartOfHour({start:DateTime})
  AND hour < {end:DateTime}
  AND NOT is_bot
GROUP BY value
ORDER BY clicks DESC, value;

-- name: referrers
SELECT referrer AS value, sum(clicks) AS clicks
FROM kurz_clicks_hourly
WHERE short_code = {code:String}
  AND hour >= toStartOfHour({start:DateTime})
  AND hour < {end:DateTime}
  AND NOT is_bot
GROUP BY value
ORDER BY clicks DESC, value;

-- name: devices
SELECT device AS value, sum(clicks) AS clicks
FROM kurz_clicks_hourly
WHERE short_code = {code:String}
  AND hour >= toStartOfHour({start:DateTime})
  AND hour < {end:DateTime}
  AND NOT is_bot
GROUP BY value
ORDER BY clicks DESC, value;

-- name: browsers
SELECT browser AS value, sum(clicks) AS clicks
FROM kurz_clicks_hourly
WHERE short_code = {code:String}
  AND hour >= toStartOfHour({start:DateTime})
  AND hour < {end:DateTime}
  AND NOT is_bot
GROUP BY value
ORDER BY clicks DESC, value;

-- name: operating_systems
SELECT os AS value, sum(clicks) AS clicks
FROM kurz_clicks_hourly
WHERE short_code = {code:String}
  AND hour >= toStartOfHour({start:DateTime})
  AND hour < {end:DateTime}
  AND NOT is_bot
GROUP BY value
ORDER BY clicks DESC, value;
