ALTER TYPE parcel_shape ALTER ATTRIBUTE width TYPE bigint;
