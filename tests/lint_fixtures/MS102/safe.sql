-- migrate-safe:no-transaction
DROP INDEX CONCURRENTLY IF EXISTS orders_created_at_idx;
