-- A nullable column without a default is a catalog-only change: no table rewrite.
ALTER TABLE customers ADD COLUMN display_name text;
