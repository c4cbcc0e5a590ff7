SELECT 1;
-- migrate-safe:allow=MS401  (unused since release 42; backed up)
DROP TABLE legacy_invoices;
