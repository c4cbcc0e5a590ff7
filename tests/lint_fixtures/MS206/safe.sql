-- migrate-safe:allow=MS206
-- the view keeps the old name working until every reader has moved
ALTER TABLE orders RENAME TO purchases;
CREATE VIEW orders AS SELECT * FROM purchases;
