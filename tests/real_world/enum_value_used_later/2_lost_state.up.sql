ALTER TYPE parcel_state ADD VALUE 'lost';
