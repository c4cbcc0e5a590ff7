CREATE TABLE parcel (id bigint PRIMARY KEY, code text);
