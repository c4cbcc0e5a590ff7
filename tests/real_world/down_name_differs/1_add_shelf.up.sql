CREATE TABLE shelf (id bigint PRIMARY KEY);
