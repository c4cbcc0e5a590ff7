-- Data backfill, kept apart from the DDL so the ALTER's lock is not held while rows change.
-- Idempotent: only rows still missing a value are touched.
UPDATE customers
SET display_name = initcap(split_part(email, '@', 1))
WHERE display_name IS NULL;
