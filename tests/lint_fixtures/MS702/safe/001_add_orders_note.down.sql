-- migrate-safe:allow=MS402
ALTER TABLE orders DROP COLUMN note;
