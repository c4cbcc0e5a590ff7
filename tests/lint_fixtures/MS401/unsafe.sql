DROP TABLE legacy_invoices;
