ALTER TABLE orders DROP COLUMN status;  -- migrate-safe:allow=MS402 (contract step)
