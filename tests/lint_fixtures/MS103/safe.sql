-- migrate-safe:no-transaction
REINDEX TABLE CONCURRENTLY orders;
