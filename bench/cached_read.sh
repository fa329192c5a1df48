#!/usr/bin/env bash
# Benchmark: a read served from the marquee gateway's response cache
# against nginx (Debian's package) serving the same bytes as a static file.
#
# The read is GET /v1/screens/1, a screen's seat layout from catalog
# (about 2.8 kB of JSON, public, max-age=10, stale-while-revalidate=10).
# Not the seat map of a show (GET /v1/shows/{id}/seats): booking marks it
# no-cache with an ETag, because its seat states change with every hold,
# and a map a second old shows taken seats as free, which sends customers
# into conflicts in exactly the flash sale that caching would serve.  The
# gateway obeys: it keeps the map but asks booking (If-None-Match) on
# every use.  The layout is the seat map's unchanging part, the same size,
# and what a cache should serve.
#
# The gateway (one thread) has the catalog as its upstream, which answers
# the first request and a background refresh every 10 s; every other
# request is a hit.  nginx (one worker, sendfile, access log off) serves
# the catalog's bytes from a file with the same Content-Type.  Both are
# pinned to the first core and wrk to the second (the catalog too: it is
# idle), the same pinning as bench/proxy.sh's shared mode.  Rounds of each
# in turn (three by default), each row the round with the median
# requests/s; CPU per request is utime + stime over the measured run.
# The machine may be shared: the load of others shifts from one round to
# the next, so each round also gives the ratio of its two back-to-back
# runs, and the median of those paired ratios is the figure the goal is
# judged on (the medians of each column alone may come from rounds far
# apart).  CPU per request moves least with the load of others.
#
# Goal: the gateway's requests/s at least 0.9 x nginx's.  Appends the
# table and the ratios to bench/RESULTS.md.
#
# Knobs (environment): MARQUEE_BIN (default build/release/marquee),
# BENCH_DURATION (10s), BENCH_WARMUP (2s), BENCH_CONNECTIONS (64),
# BENCH_ROUNDS (3).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

bin=${MARQUEE_BIN:-build/release/marquee}
duration=${BENCH_DURATION:-10s}
warmup=${BENCH_WARMUP:-2s}
connections=${BENCH_CONNECTIONS:-64}
rounds=${BENCH_ROUNDS:-3}
path=/v1/screens/1
results=bench/RESULTS.md
goal_rps=0.9
# shellcheck disable=SC2034 # read by bench/lib.sh (wait_for, run_wrk)
ready_timeout_s=20

upstream_pid=""
gateway_pid=""
nginx_pid=""
wrk_pid=""
work=""

# shellcheck source=bench/lib.sh
source bench/lib.sh

cleanup() {
    stop_pid "$wrk_pid"
    stop_pid "$gateway_pid"
    stop_pid "$nginx_pid"
    stop_pid "$upstream_pid"
    if [[ -n $work ]]; then
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# cpu_ticks PID: utime + stime of PID and its live children (nginx's
# worker is a child of its master), in clock ticks.
cpu_ticks() {
    local total=0 p stat
    for p in "$1" $(pgrep -P "$1" || true); do
        stat=$(<"/proc/$p/stat") || die "process $p is gone"
        stat=${stat##*) }
        total=$((total + $(awk '{ print $12 + $13 }' <<<"$stat")))
    done
    printf '%s\n' "$total"
}

ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'
}

# measure NAME PORT PID ROUND: warm-up, then wrk; keeps requests/s, p50,
# p99 and CPU per request as NAME_rROUND_*.
measure() {
    local name=$1 port=$2 pid=$3 round=$4 out requests c0 c1 rps
    local url="http://127.0.0.1:$port$path"
    out="$work/wrk-$name-$round.txt"
    log "round $round, $name: warm-up $warmup"
    run_wrk /dev/null -t1 -c"$connections" -d"$warmup" "$url"
    log "round $round, $name: wrk -t1 -c$connections -d$duration --latency"
    c0=$(cpu_ticks "$pid")
    run_wrk "$out" -t1 -c"$connections" -d"$duration" --latency "$url"
    c1=$(cpu_ticks "$pid")
    sed 's/^/    /' "$out"
    if grep -q -e 'Non-2xx' -e 'Socket errors' "$out"; then
        die "$name: wrk saw errors or non-2xx answers; figures not recorded"
    fi
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
    requests=$(awk '$2 == "requests" && $3 == "in" {print $1}' "$out")
    [[ -n $rps && -n $requests ]] || die "$name: no figures in wrk's output"
    printf -v "${name}_r${round}_rps" '%s' "$rps"
    printf -v "${name}_r${round}_p50" '%s' \
        "$(to_ms "$(awk '$1 == "50%" {print $2}' "$out")")"
    printf -v "${name}_r${round}_p99" '%s' \
        "$(to_ms "$(awk '$1 == "99%" {print $2}' "$out")")"
    printf -v "${name}_r${round}_cpu" '%s' "$(awk -v t="$((c1 - c0))" \
        -v n="$requests" -v hz="$clk_tck" \
        'BEGIN { printf "%.2f", t * 1000000 / hz / n }')"
}

# pick_median NAME: NAME_* are the figures of its median round by
# requests/s.
pick_median() {
    local name=$1 r v pick src
    pick=$(for ((r = 1; r <= rounds; r++)); do
        v=${name}_r${r}_rps
        printf '%s %s\n' "${!v}" "$r"
    done | sort -g | awk -v m="$(((rounds + 1) / 2))" 'NR == m {print $2}')
    for v in rps p50 p99 cpu; do
        src=${name}_r${pick}_$v
        printf -v "${name}_$v" '%s' "${!src}"
    done
}

start_upstream() {
    upstream_port=$(free_port)
    taskset -c 1 "$bin" catalog --http.host=127.0.0.1 \
        --http.port="$upstream_port" --http.threads=1 --catalog.demo=true \
        --store.path="$work/catalog.db" 2>"$work/upstream.log" &
    upstream_pid=$!
    wait_for "http://127.0.0.1:$upstream_port/readyz" "$upstream_pid" \
        upstream "$work/upstream.log"
}

start_gateway() {
    gateway_port=$(free_port)
    cat >"$work/routes.json" <<JSON
{"pools": {"catalog": {"instances": ["127.0.0.1:$upstream_port"]}},
 "routes": [{"prefix": "/v1/", "pool": "catalog", "cache": {}}]}
JSON
    taskset -c 0 "$bin" gateway --http.host=127.0.0.1 \
        --http.port="$gateway_port" --http.threads=1 \
        --gateway.routes="$work/routes.json" \
        --gateway.accounts.path="$work/gateway.db" 2>"$work/gateway.log" &
    gateway_pid=$!
    wait_for "http://127.0.0.1:$gateway_port$path" "$gateway_pid" gateway \
        "$work/gateway.log"
}

start_nginx() {
    local tmp=$work/nginx-tmp
    nginx_port=$(free_port)
    mkdir -p "$tmp" "$work/www/v1/screens"
    cp "$work/body-direct" "$work/www/v1/screens/1"
    chmod -R a+rX "$work/www"
    cat >"$work/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $work/nginx.pid;
error_log stderr warn;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 65s;
    keepalive_requests 1000000;
    open_file_cache max=16;
    client_body_temp_path $tmp/body;
    proxy_temp_path $tmp/proxy;
    fastcgi_temp_path $tmp/fastcgi;
    uwsgi_temp_path $tmp/uwsgi;
    scgi_temp_path $tmp/scgi;
    server {
        listen 127.0.0.1:$nginx_port;
        root $work/www;
        default_type application/json;
        add_header Cache-Control "public, max-age=10";
    }
}
CONF
    taskset -c 0 nginx -p "$work" -c "$work/nginx.conf" -e stderr \
        2>"$work/nginx.log" &
    nginx_pid=$!
    wait_for "http://127.0.0.1:$nginx_port$path" "$nginx_pid" nginx \
        "$work/nginx.log"
}

# same_bytes NAME PORT: the server answers the catalog's bytes.
same_bytes() {
    curl -sS -f -o "$work/body-$1" "http://127.0.0.1:$2$path" ||
        die "GET $path from $1 failed"
    cmp -s "$work/body-$1" "$work/body-direct" ||
        die "$1 does not serve the catalog's bytes"
}

# paired_ratio: the median over the rounds of gateway/nginx requests/s,
# each of one round's two runs.
paired_ratio() {
    local r a b
    for ((r = 1; r <= rounds; r++)); do
        a=gateway_r${r}_rps
        b=nginx_r${r}_rps
        ratio "${!a}" "${!b}"
        printf '\n'
    done | sort -g | awk -v m="$(((rounds + 1) / 2))" 'NR == m {print}'
}

# round_ratios: every round's paired ratio, in round order.
round_ratios() {
    local r a b out=""
    for ((r = 1; r <= rounds; r++)); do
        a=gateway_r${r}_rps
        b=nginx_r${r}_rps
        out+="${out:+, }$(ratio "${!a}" "${!b}")"
    done
    printf '%s\n' "$out"
}

# shellcheck disable=SC2154 # NAME_rps and the rest are set by pick_median
table() {
    printf '| server | requests/s | p50 (ms) | p99 (ms) |'
    printf ' CPU (us/request) |\n'
    printf '|---|---:|---:|---:|---:|\n'
    printf '| nginx %s, static file | %s | %s | %s | %s |\n' \
        "$nginx_version" "$nginx_rps" "$nginx_p50" "$nginx_p99" "$nginx_cpu"
    printf '| marquee gateway, cache hit | %s | %s | %s | %s |\n' \
        "$gateway_rps" "$gateway_p50" "$gateway_p99" "$gateway_cpu"
    printf '| ratio gateway/nginx | %s | %s | %s | %s |\n' \
        "$(ratio "$gateway_rps" "$nginx_rps")" \
        "$(ratio "$gateway_p50" "$nginx_p50")" \
        "$(ratio "$gateway_p99" "$nginx_p99")" \
        "$(ratio "$gateway_cpu" "$nginx_cpu")"
}

goal() {
    local r
    r=$(paired_ratio)
    printf 'Requests/s ratio gateway/nginx of each round: %s.\n\n' \
        "$(round_ratios)"
    awk -v r="$r" -v g="$goal_rps" 'BEGIN {
        printf "Goal: requests/s at least %s x nginx'"'"'s; median of the " \
            "paired ratios %s: %s\n", g, r, (r >= g ? "met" : "not met") }'
}

append_results() {
    local stamp commit
    stamp=$(date -u '+%Y-%m-%d %H:%M UTC')
    commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
    if [[ -n $(git status --porcelain -- src 2>/dev/null) ]]; then
        commit="$commit (with uncommitted changes under src/)"
    fi
    cat >>"$results" <<ENTRY

## $stamp: cached read, gateway cache vs nginx static file, GET $path

- command: \`BENCH_ROUNDS=$rounds BENCH_DURATION=$duration \
bench/cached_read.sh\`
- load: \`wrk -t1 -c$connections -d$duration --latency\` after a $warmup
  warm-up; $rounds rounds of each in turn, each row the round with the
  median requests/s
- setup: marquee gateway --http.threads=1, route \`"cache": {}\` in front
  of one catalog (demo data); nginx worker_processes 1, sendfile, the
  catalog's bytes as a file; access logs off
- pinning: gateway and nginx on CPU 0, wrk and the (idle) catalog on CPU 1
- CPU: utime + stime of the server (nginx: master and worker) over the
  measured run, over wrk's request count
- commit $commit; $(nproc) cores; body $body_bytes bytes

$(table)

$(goal)
ENTRY
    log "appended to $results"
}

main() {
    local round
    [[ -x $bin ]] || die "$bin is not built; run: make bench"
    command -v wrk >/dev/null || die "wrk is missing; run: scripts/deps.sh"
    command -v nginx >/dev/null || die "nginx is missing; run scripts/deps.sh"
    (($(nproc) >= 2)) || die "two cores are needed (server and wrk apart)"
    [[ $rounds =~ ^[1-9][0-9]*$ ]] ||
        die "BENCH_ROUNDS is a count of rounds, not \"$rounds\""
    clk_tck=$(getconf CLK_TCK)
    nginx_version=$(nginx -v 2>&1 | sed -n 's|.*nginx/\([^ ]*\).*|\1|p')
    # shellcheck disable=SC2034 # run_wrk's pinning
    load_cpu=(taskset -c 1)

    work=$(mktemp -d /tmp/marquee-cached.XXXXXX)
    # nginx's worker runs as nobody and must read the file.
    chmod 755 "$work"
    start_upstream
    curl -sS -f -o "$work/body-direct" \
        "http://127.0.0.1:$upstream_port$path" ||
        die "GET $path from the catalog failed"
    body_bytes=$(wc -c <"$work/body-direct")
    start_gateway
    start_nginx
    same_bytes gateway "$gateway_port"
    same_bytes nginx "$nginx_port"
    log "GET $path: $body_bytes bytes"

    for ((round = 1; round <= rounds; round++)); do
        measure nginx "$nginx_port" "$nginx_pid" "$round"
        measure gateway "$gateway_port" "$gateway_pid" "$round"
    done
    pick_median nginx
    pick_median gateway
    printf '\n'
    table
    printf '\n'
    goal
    append_results
}

main "$@"
