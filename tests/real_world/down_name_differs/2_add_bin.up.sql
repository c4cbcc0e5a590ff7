CREATE TABLE bin (id bigint PRIMARY KEY);
