ALTER TABLE customers ADD COLUMN nickname text;
ALTER TABLE customers ADD CONSTRAINT customers_nickname_length
    CHECK (char_length(nickname) <= 40) NOT VALID;
