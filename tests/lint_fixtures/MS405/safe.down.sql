ALTER TABLE customers RENAME COLUMN display_name TO display_name_rolled_back;
