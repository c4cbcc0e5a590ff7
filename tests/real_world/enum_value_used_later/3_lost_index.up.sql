CREATE INDEX parcel_lost ON parcel (id) WHERE state = 'lost';
