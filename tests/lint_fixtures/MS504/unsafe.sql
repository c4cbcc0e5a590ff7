ALTER DOMAIN positive_cents ADD CONSTRAINT positive CHECK (VALUE > 0);
