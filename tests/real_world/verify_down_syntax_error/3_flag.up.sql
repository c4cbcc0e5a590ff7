ALTER TABLE parcel ADD COLUMN flag boolean;
