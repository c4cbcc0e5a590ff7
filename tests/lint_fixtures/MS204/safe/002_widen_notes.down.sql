-- migrate-safe:allow=MS204
ALTER TABLE notes ALTER COLUMN body TYPE varchar(200);
ALTER TABLE notes ALTER COLUMN amount TYPE numeric(10, 2);
