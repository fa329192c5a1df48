-- pgbench script of bench/flash_sale.sh: one hold of two adjacent seats,
-- the same transaction the booking service makes durable for
-- POST /v1/shows/{id}/holds.  Variables come from pgbench -D:
--   hot_show, cold_lo, cold_hi  the shows (cold ones a contiguous range)
--   hot_share                   percent of holds on the hot show
--   release_share               percent of successful holds released after
--   hold_s                      how long a hold lives
-- A hold succeeds only when both seats change; otherwise it rolls back (a
-- conflict).  Successes are the rows of holds after the run.
\set r random(1, 100)
\if :r <= :hot_share
\set show :hot_show
\else
\set show random(:cold_lo, :cold_hi)
\endif
\set u random(0, 999999)
SELECT (:u * (nseats - 1)) / 1000000 AS p FROM shows WHERE id = :show \gset
BEGIN;
WITH h AS (SELECT nextval('hold_ids') AS id),
upd AS (
    UPDATE seats
    SET state = 1, hold_id = (SELECT id FROM h),
        expires_at = now() + make_interval(secs => :hold_s)
    WHERE show_id = :show AND seat_idx IN (:p, :p + 1)
      AND (state = 0 OR expires_at < now())
    RETURNING hold_id
)
SELECT count(*) AS n, coalesce(max(hold_id), 0) AS hid FROM upd \gset
\if :n = 2
INSERT INTO holds (id, show_id, customer, seats, created_at, expires_at)
VALUES (:hid, :show, 'pgbench-' || :client_id::text, ARRAY[:p, :p + 1],
        now(), now() + make_interval(secs => :hold_s));
COMMIT;
\set rr random(1, 100)
\if :rr <= :release_share
BEGIN;
UPDATE seats SET state = 0, hold_id = NULL, expires_at = NULL
WHERE show_id = :show AND seat_idx IN (:p, :p + 1) AND hold_id = :hid;
UPDATE holds SET released_at = now() WHERE id = :hid;
COMMIT;
\endif
\else
ROLLBACK;
\endif
