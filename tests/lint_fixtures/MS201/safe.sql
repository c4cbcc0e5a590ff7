-- now() is STABLE: stored in the catalog, no rewrite since PostgreSQL 11.
ALTER TABLE orders ADD COLUMN imported_at timestamptz DEFAULT now();
ALTER TABLE orders ADD COLUMN public_id uuid;
ALTER TABLE orders ALTER COLUMN public_id SET DEFAULT gen_random_uuid();
