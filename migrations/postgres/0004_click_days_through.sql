-- Daily visitor sketches are complete for every UTC day before the mark in
-- settings.click_days_through (milliseconds). Writes keep the sketch of such a day
-- up to date themselves, but skip it for later days (the current one, under
-- traffic): those are read from their hourly rows until the day is over and
-- Store::compact_click_days builds their sketches. Every day before the one this
-- migration runs on was written completely by the code before it. A click write
-- holds the mark's row FOR SHARE, compaction holds it FOR UPDATE, so no write can
-- skip a day's sketch while that day is being built.
INSERT INTO settings (name, value)
VALUES ('click_days_through', (floor(extract(epoch FROM now()) / 86400)::bigint * 86400000)::text)
ON CONFLICT (name) DO NOTHING;

-- Compaction finds the link-hours of the days it builds by time.
CREATE INDEX click_rollups_by_hour ON click_rollups (hour);
