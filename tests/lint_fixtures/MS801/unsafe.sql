ALTER TABLE customers ADD COLUMN nickname varchar(40);
