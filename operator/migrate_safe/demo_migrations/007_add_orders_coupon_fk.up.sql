-- A foreign key on a big, busy table: NOT VALID takes only a brief lock and checks new rows;
-- existing rows are validated by the next migration under a weaker lock.
CREATE TABLE coupons (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code text NOT NULL UNIQUE
);
ALTER TABLE orders ADD COLUMN coupon_id bigint;
ALTER TABLE orders
    ADD CONSTRAINT orders_coupon_id_fkey FOREIGN KEY (coupon_id) REFERENCES coupons (id) NOT VALID;
