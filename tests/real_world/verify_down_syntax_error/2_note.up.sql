ALTER TABLE parcel ADD COLUMN note text;
