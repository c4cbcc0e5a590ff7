DROP TYPE parcel_shape;
