-- The anchor of bench/flash_sale.sh: the seats of every show in one table,
-- a row per seat, and a row per hold.  Loaded by the script with the same
-- shows and seat counts as the catalog the booking service reads.
--
-- state: 0 free, 1 held, 2 sold (the same codes as src/domain/inventory.h).
-- A held seat whose expires_at has passed counts as free, as in booking.

CREATE TABLE shows (
    id integer PRIMARY KEY,
    nseats integer NOT NULL CHECK (nseats >= 2)
);

CREATE TABLE seats (
    show_id integer NOT NULL,
    seat_idx integer NOT NULL,
    state smallint NOT NULL DEFAULT 0,
    hold_id bigint,
    expires_at timestamptz,
    PRIMARY KEY (show_id, seat_idx)
);

CREATE SEQUENCE hold_ids;

CREATE TABLE holds (
    id bigint PRIMARY KEY,
    show_id integer NOT NULL,
    customer text NOT NULL,
    seats integer[] NOT NULL,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    released_at timestamptz
);
