-- migrate-safe:no-transaction
-- migrate-safe:lock-timeout=2s
-- Built CONCURRENTLY so writes to orders keep flowing; that cannot run in a transaction.
CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_customer_id_idx ON orders (customer_id);
