CREATE TABLE depot (id bigint PRIMARY KEY);
