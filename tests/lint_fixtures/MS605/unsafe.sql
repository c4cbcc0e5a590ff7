ALTER TABLE orders ADD COLUMN state text;
UPDATE orders SET state = status;
