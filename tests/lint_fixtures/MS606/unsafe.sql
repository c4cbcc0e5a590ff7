-- migrate-safe:no-transaction
CREATE INDEX CONCURRENTLY orders_a_idx ON orders (a);
CREATE INDEX CONCURRENTLY orders_b_idx ON orders (b);
