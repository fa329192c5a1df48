-- Fills seats from shows (copied in by bench/flash_sale.sh), all free.
INSERT INTO seats (show_id, seat_idx)
SELECT s.id, g.i
FROM shows s, generate_series(0, s.nseats - 1) AS g(i);

VACUUM ANALYZE;

SELECT count(*) AS shows, (SELECT count(*) FROM seats) AS seats FROM shows;
