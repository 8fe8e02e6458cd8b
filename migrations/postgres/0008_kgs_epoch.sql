-- The server history that granted the last key lease (see LEASE_SKIP_ON_NEW_SERVER
-- in src/store/postgres.rs): recorded now, so the first lease of a new database does
-- not skip, while a database whose last recorded history differs (a promoted
-- replica, a restore) does.
INSERT INTO settings (name, value)
SELECT 'kgs_epoch',
       (SELECT system_identifier FROM pg_control_system())::text || ':' ||
       ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int::text
ON CONFLICT (name) DO UPDATE SET value = excluded.value;
