ALTER TABLE orders ADD COLUMN note text;
COMMIT;
CREATE INDEX orders_note_idx ON orders (note);
