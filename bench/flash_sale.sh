#!/usr/bin/env bash
# Benchmark: the flash sale.  Many clients hold pairs of adjacent seats, most
# of them on one hot show and the rest spread over every other show, against
# the booking service (release build, durable: SQLite synchronous=FULL), and
# the same hold transaction run by pgbench on PostgreSQL beside it (fsync and
# synchronous_commit on).  Loopback only.
#
# Marquee is driven open-loop by `marquee loadgen`: requests leave on a fixed
# schedule and latency counts from the scheduled time.  The rate is found by
# a ladder of short runs (doubling from BENCH_FIRST_RATE, then four halvings
# of the gap between the last good rate and the first bad one): the highest
# rate whose p99 stays under BENCH_P99_MS with no timeout, drop or error.
# Each step and the measured run start a fresh booking instance, so every
# run begins with every seat free, as PostgreSQL's does.  pgbench is
# closed-loop (each of its clients waits for an answer before the next
# transaction): it reports the throughput PostgreSQL reaches at that
# concurrency, whatever its latency.
#
# Prints a table and the ratio of durable successful holds per second,
# marquee over PostgreSQL, and appends them to bench/RESULTS.md.
#
# Knobs (environment): MARQUEE_BIN (default build/release/marquee),
# BENCH_DURATION_S (10), BENCH_STEP_S (4, per ladder step),
# BENCH_CONNECTIONS (64), BENCH_FIRST_RATE (1000), BENCH_MAX_RATE (64000),
# BENCH_RATE (a fixed rate: no ladder), BENCH_P99_MS (50),
# BENCH_HOT_SHARE (80), BENCH_RELEASE_SHARE (50), BENCH_BOOKING_THREADS (1).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

bin=${MARQUEE_BIN:-build/release/marquee}
duration_s=${BENCH_DURATION_S:-10}
# The anchor's transaction stores no idempotency record, so by default the
# holds carry no Idempotency-Key either: the same work on both sides.
# BENCH_KEYS=true sends one with every hold (booking then also stores every
# answer, refusals included).
keys=${BENCH_KEYS:-false}
step_s=${BENCH_STEP_S:-4}
connections=${BENCH_CONNECTIONS:-64}
first_rate=${BENCH_FIRST_RATE:-1000}
max_rate=${BENCH_MAX_RATE:-64000}
fixed_rate=${BENCH_RATE:-}
p99_limit_ms=${BENCH_P99_MS:-50}
hot_share=${BENCH_HOT_SHARE:-80}
release_share=${BENCH_RELEASE_SHARE:-50}
booking_threads=${BENCH_BOOKING_THREADS:-1}
hot_show=1
seats_per_hold=2
seed=20261203
results=bench/RESULTS.md
goal_ratio=3
ready_timeout_s=30
measure_tries=3
pg_clients=$connections
pg_threads=2

catalog_pid=""
booking_pid=""
load_pid=""
pg_data=""
pg_bin=""
work=""

# shellcheck source=bench/lib.sh
source bench/lib.sh

# PostgreSQL refuses to run as root: as root, its commands run as postgres.
pg_user=()
if ((EUID == 0)); then
    pg_user=(runuser -u postgres --)
fi
as_postgres() { "${pg_user[@]}" "$@"; }

cleanup() {
    stop_pid "$load_pid"
    stop_pid "$booking_pid"
    stop_pid "$catalog_pid"
    if [[ -n $pg_data && -f $pg_data/postmaster.pid ]]; then
        as_postgres "$pg_bin/pg_ctl" -D "$pg_data" -m immediate -w stop \
            >/dev/null 2>&1 || true
    fi
    if [[ -n $work ]]; then
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

start_catalog() {
    catalog_port=$(free_port)
    "${server_cpu[@]}" "$bin" catalog --http.host=127.0.0.1 \
        --http.port="$catalog_port" --http.threads=1 --catalog.demo=true \
        --store.path="$work/catalog.db" 2>"$work/catalog.log" &
    catalog_pid=$!
    wait_for "http://127.0.0.1:$catalog_port/readyz" "$catalog_pid" catalog \
        "$work/catalog.log"
}

# The demo's shows: the cold ones are every id but the hot one, and must be
# one contiguous range, since both load generators draw from a range.
read_shows() {
    local row
    row=$(sqlite3 -separator ' ' "$work/catalog.db" \
        "SELECT min(s.id), max(s.id), count(*), sum(sc.seat_count)
         FROM shows s JOIN screens sc ON sc.id = s.screen_id
         WHERE s.status = 'scheduled'")
    read -r first_show last_show nshows total_seats <<<"$row"
    [[ -n $nshows && $nshows -gt 2 ]] || die "the demo catalog has no shows"
    ((last_show - first_show + 1 == nshows)) ||
        die "demo show ids are not contiguous ($first_show..$last_show)"
    ((first_show == hot_show)) || die "show $hot_show is not the first one"
    cold_lo=$((hot_show + 1))
    cold_hi=$last_show
    hot_seats=$(sqlite3 "$work/catalog.db" \
        "SELECT sc.seat_count FROM shows s JOIN screens sc
         ON sc.id = s.screen_id WHERE s.id = $hot_show")
    sqlite3 -csv "$work/catalog.db" \
        "SELECT s.id, sc.seat_count FROM shows s JOIN screens sc
         ON sc.id = s.screen_id ORDER BY s.id" >"$work/shows.csv"
    chmod 644 "$work/shows.csv"
    log "$nshows shows, $total_seats seats; hot show $hot_show" \
        "($hot_seats seats), cold shows $cold_lo-$cold_hi"
}

# start_booking NAME: a fresh instance with its own database.
start_booking() {
    local name=$1
    mkdir -p "$work/$name"
    booking_port=$(free_port)
    "${server_cpu[@]}" "$bin" booking --http.host=127.0.0.1 \
        --http.port="$booking_port" --http.threads="$booking_threads" \
        --booking.catalog_url="http://127.0.0.1:$catalog_port" \
        --store.path="$work/$name/booking.db" 2>"$work/$name/booking.log" &
    booking_pid=$!
    wait_for "http://127.0.0.1:$booking_port/readyz" "$booking_pid" booking \
        "$work/$name/booking.log"
}

# stop_booking NAME: fails when the instance died during the run.
stop_booking() {
    local name=$1 rc=0
    if ! kill -0 "$booking_pid" 2>/dev/null; then
        wait "$booking_pid" || rc=$?
        booking_pid=""
        tail -n 5 "$work/$name/booking.log" >&2 || true
        die "booking died during the run ($name, exit status $rc)"
    fi
    stop_pid "$booking_pid"
    booking_pid=""
}

# summary FILE: one line of the loadgen report: holds/s, conflicts/s,
# p50 and p99 of all answers (ms), answers, and failures (5xx, other 4xx,
# timeouts, I/O and connect errors, drops).
summary() {
    python3 - "$1" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
s = d["status"]
bad = (s["5xx"] + s["4xx_other"] + s["other"] + s["timeouts"]
       + s["io_errors"] + s["connect_errors"] + s["dropped"])
a = d["latency_ms"]["all"]
print(d["holds_per_s"], d["conflicts_per_s"], a["p50"], a["p99"],
      a["count"], bad)
PY
}

# run_marquee RATE SECONDS NAME: a fresh booking, one loadgen run; sets
# m_holds m_conflicts m_p50 m_p99 m_answers m_bad.
run_marquee() {
    local rate=$1 secs=$2 name=$3 out
    start_booking "$name"
    out="$work/$name/loadgen"
    "${load_cpu[@]}" "$bin" loadgen \
        --loadgen.target="http://127.0.0.1:$booking_port" \
        --loadgen.rate="$rate" --loadgen.duration_s="$secs" \
        --loadgen.connections="$connections" --loadgen.hot_show="$hot_show" \
        --loadgen.cold_shows="$cold_lo-$cold_hi" \
        --loadgen.hot_share="$hot_share" \
        --loadgen.seats_per_hold="$seats_per_hold" \
        --loadgen.release_share="$release_share" --loadgen.seed="$seed" \
        --loadgen.idempotency_keys="$keys" \
        >"$out.json" 2>"$out.log" &
    load_pid=$!
    wait "$load_pid" || {
        tail -n 5 "$out.log" >&2
        die "loadgen failed at $rate/s"
    }
    load_pid=""
    stop_booking "$name"
    read -r m_holds m_conflicts m_p50 m_p99 m_answers m_bad \
        < <(summary "$out.json")
}

# Whether the last run kept p99 under the limit with nothing lost.
run_ok() {
    awk -v p="$m_p99" -v lim="$p99_limit_ms" -v bad="$m_bad" \
        'BEGIN { exit !(p < lim && bad == 0) }'
}

step() {
    local rate=$1 verdict
    run_marquee "$rate" "$step_s" "step-$rate"
    if run_ok; then verdict=ok; else verdict="too slow or lossy"; fi
    log "  $rate/s: $m_answers answers, holds/s $m_holds," \
        "conflicts/s $m_conflicts, p99 $m_p99 ms, failures $m_bad: $verdict"
    [[ $verdict == ok ]]
}

# Sets rate: the highest rate of the ladder that passes.
calibrate() {
    local r=$first_rate good=0 bad=0 mid
    log "ladder: ${step_s}s per step, p99 under $p99_limit_ms ms," \
        "no failures"
    while ((r <= max_rate)); do
        if step "$r"; then
            good=$r
            r=$((r * 2))
        else
            bad=$r
            break
        fi
    done
    # Halvings of the gap between the last good and the first bad rate, to
    # within 1/16 of the first bad rate: capacity to about 6%.
    for _ in 1 2 3 4; do
        ((good > 0 && bad > 0)) || break
        mid=$(((good + bad) / 2))
        if step "$mid"; then good=$mid; else bad=$mid; fi
    done
    ((good > 0)) || die "even $first_rate/s misses p99 < $p99_limit_ms ms"
    rate=$good
    if ((bad == 0)); then
        rate_note="the ladder's top, $max_rate/s, passed: capacity is higher"
    else
        rate_note="highest ladder rate with p99 < $p99_limit_ms ms"
    fi
}

# The measured run, at $rate; a rate that held for a short step may not hold
# for the whole run, so the run is checked too, and done again at three
# quarters of the rate when it misses (at most measure_tries times).
measure_marquee() {
    local try
    for ((try = 1; try <= measure_tries; try++)); do
        measured=measured-$try
        log "measured run: $rate/s for ${duration_s}s on a fresh booking"
        run_marquee "$rate" "$duration_s" "$measured"
        if run_ok || [[ -n $fixed_rate ]]; then
            return 0
        fi
        log "  p99 $m_p99 ms, failures $m_bad: misses the limit"
        if ((try < measure_tries)); then
            rate=$((rate * 3 / 4))
            rate_note="3/4 of a rate that missed p99 < $p99_limit_ms ms"
            rate_note+=" over ${duration_s}s"
        fi
    done
    rate_note="p99 over $p99_limit_ms ms even at this rate"
}

start_postgres() {
    local port=$1
    pg_bin=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n1)
    [[ -x $pg_bin/initdb ]] || die "PostgreSQL is missing; run scripts/deps.sh"
    pg_data=$work/pg
    mkdir -p "$pg_data" "$work/pgsock"
    if ((EUID == 0)); then
        chown postgres: "$pg_data" "$work/pgsock"
    fi
    as_postgres "$pg_bin/initdb" -D "$pg_data" -U postgres -A trust \
        --no-sync >"$work/initdb.log" 2>&1 ||
        { tail -n 20 "$work/initdb.log" >&2; die "initdb failed"; }
    # Durable like booking; otherwise PostgreSQL at its best for this load:
    # room for the whole data set in memory, no checkpoint during the run.
    cat >>"$pg_data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$work/pgsock'
max_connections = $((pg_clients + 16))
fsync = on
synchronous_commit = on
full_page_writes = on
shared_buffers = 256MB
wal_buffers = 16MB
max_wal_size = 4GB
checkpoint_timeout = 30min
CONF
    "${server_cpu[@]}" "${pg_user[@]}" "$pg_bin/pg_ctl" -D "$pg_data" \
        -l "$pg_data/server.log" -w -t "$ready_timeout_s" start >/dev/null ||
        {
            tail -n 20 "$pg_data/server.log" >&2
            die "PostgreSQL did not start"
        }
    pg_version=$("$pg_bin/postgres" --version | awk '{print $3}')
}

psql_do() {
    "$pg_bin/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$pg_port" \
        -U postgres -d postgres "$@"
}

load_postgres() {
    psql_do -f bench/pg/schema.sql
    psql_do -c "\\copy shows (id, nseats) FROM '$work/shows.csv' CSV"
    psql_do -At -f bench/pg/load.sql | sed 's/^/    loaded (shows|seats): /'
}

# Sets p_holds p_conflicts p_p50 p_p99 p_failed.
run_pgbench() {
    local out=$work/pgbench.txt processed holds
    log "pgbench -n -M prepared -c $pg_clients -j $pg_threads -T $duration_s" \
        "-f bench/pg/hold.sql (closed loop)"
    "${load_cpu[@]}" "$pg_bin/pgbench" -h 127.0.0.1 -p "$pg_port" -U postgres \
        -n -M prepared -c "$pg_clients" -j "$pg_threads" -T "$duration_s" \
        --max-tries=10 -l --log-prefix="$work/pgbench_log" \
        -D hot_show="$hot_show" -D cold_lo="$cold_lo" -D cold_hi="$cold_hi" \
        -D hot_share="$hot_share" -D release_share="$release_share" \
        -D hold_s=480 -f bench/pg/hold.sql postgres >"$out" 2>&1 &
    load_pid=$!
    wait "$load_pid" || { tail -n 20 "$out" >&2; die "pgbench failed"; }
    load_pid=""
    sed 's/^/    /' "$out" | grep -v '^    pgbench (' || true

    processed=$(awk -F': ' '/actually processed/ {print $2+0}' "$out")
    p_failed=$(awk -F': ' '/number of failed transactions/ {print $2+0}' \
        "$out")
    p_failed=${p_failed:-0}
    holds=$(psql_do -At -c "SELECT count(*) FROM holds")
    read -r p_holds p_conflicts p_p50 p_p99 < <(python3 - "$work" \
        "$processed" "$holds" "$p_failed" "$duration_s" <<'PY'
import glob, sys
work, processed, holds, failed, secs = sys.argv[1:]
processed, holds, failed = int(processed), int(holds), int(failed)
lat = []
for name in glob.glob(work + "/pgbench_log*"):
    with open(name) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[2].isdigit():
                lat.append(int(parts[2]))
lat.sort()
def pct(p):
    if not lat:
        return 0.0
    k = max(0, -(-len(lat) * p // 100) - 1)
    return lat[int(k)] / 1000.0
secs = float(secs)
print(round(holds / secs, 2), round((processed - holds) / secs, 2),
      "%.3f" % pct(50), "%.3f" % pct(99))
PY
    )
}

ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'
}

results_header() {
    cat <<'HEADER'
# Benchmark results

Each entry is one run of a script of bench/, appended by the script itself.
Absolute figures drift on a shared machine, so every benchmark runs an
anchor beside marquee in the same run and records the ratio.
HEADER
}

append_results() {
    local stamp commit
    stamp=$(date -u '+%Y-%m-%d %H:%M UTC')
    commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
    if [[ -n $(git status --porcelain 2>/dev/null) ]]; then
        commit="$commit (with uncommitted changes)"
    fi
    if [[ ! -f $results ]]; then
        results_header >"$results"
    fi
    cat >>"$results" <<ENTRY

## $stamp: flash sale, booking vs PostgreSQL $pg_version

- command: \`bench/flash_sale.sh\`
- shows: $nshows demo shows, $total_seats seats; $hot_share% of holds on
  show $hot_show ($hot_seats seats), the rest on shows $cold_lo-$cold_hi;
  $seats_per_hold adjacent seats per hold; $release_share% of successful
  holds released right after; every run starts with every seat free
- marquee: \`marquee loadgen\` open-loop at $rate/s ($rate_note),
  $connections connections, ${duration_s}s; Idempotency-Key on every
  hold: $keys (the anchor stores no idempotency record);
  booking --http.threads=$booking_threads, SQLite synchronous=FULL
- PostgreSQL: \`pgbench -M prepared -c $pg_clients -j $pg_threads
  -T $duration_s -f bench/pg/hold.sql\`, closed-loop;
  fsync and synchronous_commit on
- setup: $pinning
- commit $commit; $(nproc) cores

| side | successful holds/s | conflicts/s | p50 (ms) | p99 (ms) | failures |
|---|---:|---:|---:|---:|---:|
| marquee (open loop, $rate/s) | $m_holds | $m_conflicts | $m_p50 \
| $m_p99 | $m_bad |
| PostgreSQL (closed loop, $pg_clients clients) | $p_holds | $p_conflicts \
| $p_p50 | $p_p99 | $p_failed |
| ratio marquee/PostgreSQL | $holds_ratio | | | | |

Durable successful holds per second, marquee over PostgreSQL: $holds_ratio
(goal: above $goal_ratio).  pgbench is closed-loop, so its latencies are per
transaction once sent; marquee's count from each request's scheduled time.
ENTRY
    log "appended to $results"
}

main() {
    [[ -x $bin ]] || die "$bin is not built; run: make bench"
    [[ $("$bin" booking --help 2>&1 || true) == *booking.catalog_url* ]] ||
        die "$bin has no booking role"
    command -v sqlite3 >/dev/null ||
        die "sqlite3 is missing; run scripts/deps.sh"
    ls /usr/lib/postgresql/*/bin/pgbench >/dev/null 2>&1 ||
        die "pgbench is missing; run scripts/deps.sh"

    # One core for the server under test, another for the load.
    if (($(nproc) >= 2)); then
        server_cpu=(taskset -c 0)
        load_cpu=(taskset -c 1)
        pinning="booking (and its catalog) and PostgreSQL pinned to CPU 0,"
        pinning+=" loadgen and pgbench to CPU 1"
    else
        server_cpu=()
        load_cpu=()
        pinning="one core: servers and load share it"
    fi

    work=$(mktemp -d /tmp/marquee-flash.XXXXXX)
    chmod 755 "$work" # PostgreSQL runs as postgres and reads shows.csv
    log "$pinning"
    start_catalog
    read_shows

    if [[ -n $fixed_rate ]]; then
        rate=$fixed_rate
        rate_note="fixed by BENCH_RATE"
    else
        calibrate
    fi
    measure_marquee
    sed 's/^/    /' "$work/$measured/loadgen.log" | grep ' progress ' || true
    sed 's/^/    /' "$work/$measured/loadgen.json"
    stop_pid "$catalog_pid"
    catalog_pid=""

    pg_port=$(free_port)
    start_postgres "$pg_port"
    log "PostgreSQL $pg_version on port $pg_port"
    load_postgres
    run_pgbench

    holds_ratio=$(ratio "$m_holds" "$p_holds")
    printf '\n%-34s %12s %12s %9s %9s %9s\n' side "holds/s" conflicts/s \
        "p50 ms" "p99 ms" failures
    printf '%-34s %12s %12s %9s %9s %9s\n' \
        "marquee (open loop, $rate/s)" "$m_holds" "$m_conflicts" "$m_p50" \
        "$m_p99" "$m_bad" \
        "PostgreSQL (closed loop, $pg_clients cl.)" "$p_holds" \
        "$p_conflicts" "$p_p50" "$p_p99" "$p_failed"
    printf '\ndurable successful holds/s, marquee/PostgreSQL: %s' \
        "$holds_ratio"
    printf ' (goal: above %s)\n' "$goal_ratio"
    printf 'pgbench is closed-loop: its clients wait for each answer, so its'
    printf ' figure is its\nthroughput at %s clients.  marquee ran' \
        "$pg_clients"
    printf ' open-loop at %s/s:\n%s.\n\n' "$rate" "$rate_note"

    append_results
}

main "$@"
