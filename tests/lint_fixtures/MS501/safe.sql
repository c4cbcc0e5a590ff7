-- migrate-safe:no-transaction
VACUUM (ANALYZE) orders;
