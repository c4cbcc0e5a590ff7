CREATE TYPE parcel_shape AS (width int, label text);
