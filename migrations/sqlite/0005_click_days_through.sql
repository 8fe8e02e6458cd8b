-- Daily visitor sketches are complete for every UTC day before the mark in
-- settings.click_days_through (milliseconds). Writes keep the sketch of such a day
-- up to date themselves, but skip it for later days (the current one, under
-- traffic): those are read from their hourly rows until the day is over and
-- Store::compact_click_days builds their sketches. Every day before the one this
-- migration runs on was written completely by the code before it.
INSERT INTO settings (name, value)
VALUES ('click_days_through', CAST(CAST(strftime('%s', 'now') AS INTEGER) / 86400 * 86400000 AS TEXT))
ON CONFLICT (name) DO NOTHING;

-- Compaction finds the link-hours of the days it builds by time.
CREATE INDEX click_rollups_by_hour ON click_rollups (hour);
