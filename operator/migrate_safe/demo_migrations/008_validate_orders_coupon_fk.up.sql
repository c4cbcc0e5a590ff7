-- VALIDATE CONSTRAINT takes SHARE UPDATE EXCLUSIVE: reads and writes go on while it scans.
ALTER TABLE orders VALIDATE CONSTRAINT orders_coupon_id_fkey;
