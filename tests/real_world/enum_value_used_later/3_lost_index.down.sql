DROP INDEX parcel_lost;
