ALTER TABLE parcel ADD CONSTRAINT parcel_code_unique UNIQUE USING INDEX parcel_code_key;
