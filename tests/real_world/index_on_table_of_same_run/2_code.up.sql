CREATE INDEX parcel_code ON parcel (code);
ALTER TABLE parcel ALTER COLUMN code SET NOT NULL;
