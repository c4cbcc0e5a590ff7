-- Renaming orders.status to orders.state without breaking the running application
-- (expand/contract): add the new column, keep both in sync with a trigger while old and new
-- code run side by side, backfill. A later migration drops `status` once nothing reads it.
ALTER TABLE orders ADD COLUMN state text;

CREATE FUNCTION orders_sync_state() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        NEW.state := coalesce(NEW.state, NEW.status);
        NEW.status := coalesce(NEW.status, NEW.state);
    ELSIF NEW.state IS DISTINCT FROM OLD.state THEN
        NEW.status := NEW.state;
    ELSIF NEW.status IS DISTINCT FROM OLD.status THEN
        NEW.state := NEW.status;
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER orders_sync_state BEFORE INSERT OR UPDATE ON orders
    FOR EACH ROW EXECUTE FUNCTION orders_sync_state();

UPDATE orders SET state = status WHERE state IS NULL;
