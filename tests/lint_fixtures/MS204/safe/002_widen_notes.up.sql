-- binary-coercible: no rewrite
ALTER TABLE notes ALTER COLUMN body TYPE text;
ALTER TABLE notes ALTER COLUMN amount TYPE numeric(14, 2);
