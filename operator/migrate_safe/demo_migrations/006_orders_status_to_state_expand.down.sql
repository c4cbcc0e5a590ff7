DROP TRIGGER orders_sync_state ON orders;
DROP FUNCTION orders_sync_state();
ALTER TABLE orders DROP COLUMN state;
