-- lint-fixture: pg-version=12
-- migrate-safe:no-transaction
REINDEX INDEX CONCURRENTLY orders_created_at_idx;
