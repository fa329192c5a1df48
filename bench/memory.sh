#!/usr/bin/env bash
# Benchmark: memory of a booking instance per seat.  A catalog gets 10,000
# shows of a 250-seat screen (one of each thing made through the admin API,
# the rest copied in its database with the sqlite3 CLI: 100 screens with the
# same layout, 100 shows each, three hours apart).  A fresh booking instance
# then learns every show by serving its seat map (GET /v1/shows/{id}/seats
# makes it fetch the show from the catalog and install it).  Its resident
# memory (VmRSS) is read before, with no show, and after; the difference
# over the number of seats is the cost of a seat.  The instance is then
# restarted, so that it loads the same shows from its own database, and
# measured again.  Loopback only.
#
# Goal: under 16 bytes per seat above the base.  Prints the figures and
# appends them to bench/RESULTS.md.
#
# Knobs (environment): MARQUEE_BIN (default build/release/marquee),
# BENCH_SHOWS (10000), BENCH_SCREENS (100), BENCH_BOOKING_THREADS (0: one
# per core, the default of the service), BENCH_FETCH_PARALLEL (8).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

bin=${MARQUEE_BIN:-build/release/marquee}
nshows=${BENCH_SHOWS:-10000}
nscreens=${BENCH_SCREENS:-100}
booking_threads=${BENCH_BOOKING_THREADS:-0}
parallel=${BENCH_FETCH_PARALLEL:-8}
seats_per_show=250
results=bench/RESULTS.md
goal_bytes=16
ready_timeout_s=30
settle_s=1
token=bench-admin-token

catalog_pid=""
booking_pid=""
work=""

# shellcheck source=bench/lib.sh
source bench/lib.sh

cleanup() {
    stop_pid "$booking_pid"
    stop_pid "$catalog_pid"
    if [[ -n $work ]]; then
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

start_catalog() {
    catalog_port=$(free_port)
    "$bin" catalog --http.host=127.0.0.1 --http.port="$catalog_port" \
        --http.threads=1 --catalog.admin_token="$token" \
        --store.path="$work/catalog.db" 2>>"$work/catalog.log" &
    catalog_pid=$!
    wait_for "http://127.0.0.1:$catalog_port/readyz" "$catalog_pid" catalog \
        "$work/catalog.log"
}

# admin PATH BODY: an admin write that must answer 201.
admin() {
    local status
    status=$(curl -s -o "$work/admin.out" -w '%{http_code}' \
        -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
        -d "$2" "http://127.0.0.1:$catalog_port$1")
    [[ $status == 201 ]] || {
        cat "$work/admin.out" >&2
        die "POST $1 answered $status"
    }
}

# Ten rows (A-K without I) of 5 + 15 + 5 seats: 250.
layout_json() {
    python3 - <<'PY'
import json
rows = []
for label in "ABCDEFGHJK":
    seats = list(range(1, 6)) + [None] + list(range(6, 21)) + [None] \
        + list(range(21, 26))
    rows.append({"label": label, "category": "classic", "seats": seats})
print(json.dumps({"categories": [{"code": "classic", "name": "Classic"}],
                  "rows": rows}))
PY
}

# One city, cinema, screen, movie and show through the API, so that every
# stored value is what the catalog itself writes; then copies in SQL.
make_catalog() {
    local starts
    start_catalog
    admin /v1/admin/cities '{"name":"Benchpur","slug":"benchpur",
        "utc_offset_minutes":330,"currency":"INR"}'
    admin /v1/admin/cinemas '{"city_id":1,"name":"Marquee Bench",
        "address":"1 Loopback Road"}'
    admin /v1/admin/cinemas/1/screens "{\"name\":\"Screen 1\",
        \"layout\":$(layout_json)}"
    admin /v1/admin/movies '{"title":"Memory Lane","language":"English",
        "genres":["drama"],"duration_minutes":120,"certificate":"U",
        "release_date":"2026-01-01"}'
    starts=$(date -u -d '+2 days' +%FT10:00:00Z)
    admin /v1/admin/shows "{\"movie_id\":1,\"screen_id\":1,
        \"starts_at\":\"$starts\",\"prices\":{\"classic\":20000}}"
    stop_pid "$catalog_pid"
    catalog_pid=""

    sqlite3 "$work/catalog.db" <<SQL
BEGIN;
WITH RECURSIVE n(k) AS (SELECT 2 UNION ALL SELECT k + 1 FROM n
                        WHERE k < $nscreens)
INSERT INTO screens (id, cinema_id, name, layout, seat_count)
SELECT k, cinema_id, 'Screen ' || k, layout, seat_count
FROM n, screens WHERE screens.id = 1;
WITH RECURSIVE n(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM n
                        WHERE k < $nshows - 1)
INSERT INTO shows (id, movie_id, screen_id, starts_at, ends_at, prices,
                   hold_seconds, status, version)
SELECT k + 1, movie_id, 1 + k % $nscreens,
       starts_at + (k / $nscreens) * 10800000,
       ends_at + (k / $nscreens) * 10800000,
       prices, hold_seconds, status, 1
FROM n, shows WHERE shows.id = 1;
COMMIT;
SQL
    local got
    got=$(sqlite3 -separator ' ' "$work/catalog.db" \
        "SELECT count(*), sum(sc.seat_count) FROM shows s
         JOIN screens sc ON sc.id = s.screen_id")
    [[ $got == "$nshows $((nshows * seats_per_show))" ]] ||
        die "the catalog has $got shows and seats, not $nshows"
    start_catalog
}

# start_booking DIR
start_booking() {
    booking_port=$(free_port)
    "$bin" booking --http.host=127.0.0.1 --http.port="$booking_port" \
        --http.threads="$booking_threads" \
        --booking.catalog_url="http://127.0.0.1:$catalog_port" \
        --store.path="$1/booking.db" 2>>"$1/booking.log" &
    booking_pid=$!
    wait_for "http://127.0.0.1:$booking_port/readyz" "$booking_pid" booking \
        "$1/booking.log"
}

# rss_kb: the booking process's VmRSS in kB, after a moment to settle.
rss_kb() {
    sleep "$settle_s"
    kill -0 "$booking_pid" 2>/dev/null || die "booking died"
    awk '/^VmRSS:/ {print $2}' "/proc/$booking_pid/status"
}

per_seat() {
    awk -v a="$1" -v b="$2" -v n="$((nshows * seats_per_show))" \
        'BEGIN { printf "%.2f", (a - b) * 1024 / n }'
}

# Serves every seat map once: booking fetches and installs each show.
fetch_all() {
    local codes ok
    codes=$(curl -s --no-progress-meter -Z --parallel-max "$parallel" \
        -o /dev/null -w '%{http_code}\n' \
        "http://127.0.0.1:$booking_port/v1/shows/[1-$nshows]/seats" \
        2>"$work/curl.log")
    ok=$(grep -c '^200$' <<<"$codes" || true)
    ((ok == nshows)) || {
        sort <<<"$codes" | uniq -c >&2
        die "$ok of $nshows seat maps answered 200"
    }
}

append_results() {
    local stamp commit
    stamp=$(date -u '+%Y-%m-%d %H:%M UTC')
    commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
    if [[ -n $(git status --porcelain 2>/dev/null) ]]; then
        commit="$commit (with uncommitted changes)"
    fi
    [[ -f $results ]] || die "$results is missing"
    cat >>"$results" <<ENTRY

## $stamp: booking memory per seat

- command: \`bench/memory.sh\`
- $nshows shows of $seats_per_show seats ($((nshows * seats_per_show)) seats)
  on $nscreens screens of one layout, learnt from the catalog through
  \`GET /v1/shows/{id}/seats\` ($parallel at a time)
- booking --http.threads=$booking_threads (0: one per core); VmRSS read
  ${settle_s}s after the last answer
- commit $commit; $(nproc) cores

| state | VmRSS (kB) | bytes per seat above base |
|---|---:|---:|
| no show (base) | $base_kb | |
| $nshows shows, fetched from the catalog | $fetched_kb | $fetched_per_seat |
| $nshows shows, loaded from its database after a restart | $loaded_kb \
| $loaded_per_seat |

Goal: under $goal_bytes bytes per seat above the base.
ENTRY
    log "appended to $results"
}

main() {
    local started
    [[ -x $bin ]] || die "$bin is not built; run: make bench"
    [[ $("$bin" booking --help 2>&1 || true) == *booking.catalog_url* ]] ||
        die "$bin has no booking role"
    command -v sqlite3 >/dev/null ||
        die "sqlite3 is missing; run scripts/deps.sh"

    work=$(mktemp -d /tmp/marquee-memory.XXXXXX)
    mkdir -p "$work/booking"
    log "catalog: $nshows shows of $seats_per_show seats on $nscreens screens"
    make_catalog

    start_booking "$work/booking"
    base_kb=$(rss_kb)
    log "booking with no show: VmRSS $base_kb kB"

    started=$SECONDS
    fetch_all
    fetched_kb=$(rss_kb)
    fetched_per_seat=$(per_seat "$fetched_kb" "$base_kb")
    log "after $nshows seat maps ($((SECONDS - started))s):" \
        "VmRSS $fetched_kb kB, $fetched_per_seat bytes per seat"

    stop_pid "$booking_pid"
    booking_pid=""
    start_booking "$work/booking"
    loaded_kb=$(rss_kb)
    loaded_per_seat=$(per_seat "$loaded_kb" "$base_kb")
    log "restarted, shows loaded from its database: VmRSS $loaded_kb kB," \
        "$loaded_per_seat bytes per seat"
    grep ' loaded ' "$work/booking/booking.log" | tail -n1 |
        sed 's/^/    /' || true

    printf '\nbytes per seat above base: %s fetched, %s after a restart' \
        "$fetched_per_seat" "$loaded_per_seat"
    printf ' (goal: under %s)\n\n' "$goal_bytes"
    append_results
}

main "$@"
