CREATE TYPE parcel_state AS ENUM ('new', 'sent');
CREATE TABLE parcel (id bigint PRIMARY KEY, state parcel_state NOT NULL DEFAULT 'new');
