CREATE TABLE crate (id bigint PRIMARY KEY, box_id bigint REFERENCES app.box);
