CREATE TABLE notes (id bigint PRIMARY KEY, body varchar(200), amount numeric(10, 2));
