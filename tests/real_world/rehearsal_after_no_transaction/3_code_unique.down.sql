ALTER TABLE parcel DROP CONSTRAINT parcel_code_unique;
