-- migrate-safe:no-transaction
CREATE UNIQUE INDEX CONCURRENTLY parcel_code_key ON parcel (code);
