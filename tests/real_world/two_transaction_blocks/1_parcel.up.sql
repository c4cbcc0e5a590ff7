CREATE TABLE parcel (id bigint PRIMARY KEY, weight int, label text);
