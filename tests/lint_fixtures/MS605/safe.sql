ALTER TABLE orders ADD COLUMN state text;
UPDATE orders SET state = status WHERE id BETWEEN 1 AND 10000 AND state IS NULL;
