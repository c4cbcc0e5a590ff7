-- migrate-safe:no-transaction
DROP INDEX CONCURRENTLY parcel_code_key;
