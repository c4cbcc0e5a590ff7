ALTER TABLE orders ADD CONSTRAINT orders_total_positive CHECK (total_cents >= 0);
