-- migrate-safe:allow=MS305
-- announced maintenance window: bookings is read-only meanwhile
ALTER TABLE bookings ADD CONSTRAINT bookings_no_overlap
    EXCLUDE USING gist (room WITH =, during WITH &&);
