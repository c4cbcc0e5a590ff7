-- lint-fixture: no-harness-timeouts
ALTER TABLE orders ADD COLUMN note text;
