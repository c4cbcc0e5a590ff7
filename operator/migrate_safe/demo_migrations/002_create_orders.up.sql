-- A new table may reference an existing one directly: the FK check scans an empty table.
CREATE TABLE orders (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES customers (id),
    total_cents bigint NOT NULL CHECK (total_cents >= 0),
    status text NOT NULL DEFAULT 'new',
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO customers (email) VALUES ('ada@example.com'), ('grace@example.com');
INSERT INTO orders (customer_id, total_cents, status)
SELECT c.id, 1000 * g, CASE WHEN g % 2 = 0 THEN 'shipped' ELSE 'new' END
FROM customers c CROSS JOIN generate_series(1, 3) AS g;
