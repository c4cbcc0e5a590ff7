DROP TABLE parcel;
DROP TYPE parcel_state;
