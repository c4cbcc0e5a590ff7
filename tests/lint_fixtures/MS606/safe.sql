-- migrate-safe:no-transaction
CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_a_idx ON orders (a);
CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_b_idx ON orders (b);
