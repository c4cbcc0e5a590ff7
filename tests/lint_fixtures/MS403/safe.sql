-- migrate-safe:allow=MS403
DROP SCHEMA reporting;
