#!/usr/bin/env bash
# Benchmark: GET /v1/shows/1 from the catalog service, beside nginx serving
# the same bytes as a static file.  Both get one thread (marquee
# --http.threads=1, nginx worker_processes 1) so that the comparison is fair;
# on a machine with two cores or more, both servers are pinned to the first
# core and wrk to the second.  Loopback only.  Prints a table and the ratios
# marquee/nginx, and appends them to bench/RESULTS.md.
#
# Knobs (environment): MARQUEE_BIN (default build/release/marquee),
# BENCH_DURATION (10s), BENCH_WARMUP (2s), BENCH_CONNECTIONS (64).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

bin=${MARQUEE_BIN:-build/release/marquee}
duration=${BENCH_DURATION:-10s}
warmup=${BENCH_WARMUP:-2s}
connections=${BENCH_CONNECTIONS:-64}
path=/v1/shows/1
results=bench/RESULTS.md
goal_ratio=0.8
ready_timeout_s=20

marquee_pid=""
nginx_pid=""
wrk_pid=""
work=""

# shellcheck source=bench/lib.sh
source bench/lib.sh

cleanup() {
    local pid
    for pid in "$wrk_pid" "$marquee_pid" "$nginx_pid"; do
        if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    if [[ -n $work ]]; then
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# measure NAME URL: warms up, runs wrk, and sets rps and p99_ms.
measure() {
    local name=$1 url=$2 out
    out="$work/wrk-$name.txt"
    log "$name: warm-up $warmup"
    run_wrk /dev/null -t1 -c"$connections" -d"$warmup" "$url"
    log "$name: wrk -t1 -c$connections -d$duration --latency $url"
    run_wrk "$out" -t1 -c"$connections" -d"$duration" --latency "$url"
    sed 's/^/    /' "$out"
    if grep -q -e 'Non-2xx' -e 'Socket errors' "$out"; then
        die "$name: wrk saw errors or non-2xx answers; figures not recorded"
    fi
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
    p99_ms=$(to_ms "$(awk '$1 == "99%" {print $2}' "$out")")
    [[ -n $rps ]] || die "$name: no Requests/sec in wrk's output"
}

ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'
}

start_marquee() {
    local port=$1
    "${server_cpu[@]}" "$bin" catalog --http.host=127.0.0.1 \
        --http.port="$port" --http.threads=1 --catalog.demo=true \
        --store.path="$work/catalog.db" 2>"$work/marquee.log" &
    marquee_pid=$!
    wait_for "http://127.0.0.1:$port/readyz" "$marquee_pid" marquee \
        "$work/marquee.log"
    # Its own word on how many threads it runs.
    grep -m1 -e ' listening ' "$work/marquee.log" | sed 's/^/    /' || true
}

# start_nginx PORT CONTENT_TYPE: serves $work/static/show.json at $path.
start_nginx() {
    local port=$1 ctype=$2 tmp=$work/nginx-tmp
    mkdir -p "$tmp"
    cat >"$work/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $work/nginx.pid;
error_log stderr warn;
events { worker_connections 1024; }
http {
    access_log off;
    # The anchor at its best for a small static file: no open() or stat()
    # per request, and the kernel sends the file.
    open_file_cache max=16 inactive=60s;
    open_file_cache_valid 60s;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 65s;
    keepalive_requests 1000000;
    client_body_temp_path $tmp/body;
    proxy_temp_path $tmp/proxy;
    fastcgi_temp_path $tmp/fastcgi;
    uwsgi_temp_path $tmp/uwsgi;
    scgi_temp_path $tmp/scgi;
    types { }
    default_type "$ctype";
    server {
        listen 127.0.0.1:$port;
        root $work/static;
        location = $path { try_files /show.json =404; }
    }
}
CONF
    "${server_cpu[@]}" nginx -p "$work" -c "$work/nginx.conf" -e stderr \
        2>"$work/nginx.log" &
    nginx_pid=$!
    wait_for "http://127.0.0.1:$port$path" "$nginx_pid" nginx \
        "$work/nginx.log"
}

results_header() {
    cat <<'HEADER'
# Benchmark results

Each entry is one run of a script of bench/, appended by the script itself.
Absolute figures drift on a shared machine, so every benchmark runs an
anchor beside marquee in the same run and records the ratio.

## catalog vs nginx

`GET /v1/shows/1` from the catalog service (release build, demo data, one
HTTP thread), against nginx (one worker, access log off, keep-alive)
serving the same bytes as a static file with the same content type.  Load
is `wrk -t1 -c64 -d10s --latency` on loopback after a 2 s warm-up; the two
servers are measured one after the other.

Goal: marquee serves at least 0.8 of nginx's requests per second.

Run it with `make bench` (builds the release binary, then `bench/run.sh`),
or `bench/catalog_vs_nginx.sh` alone once built.
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

## $stamp: catalog vs nginx, GET $path

- command: \`bench/catalog_vs_nginx.sh\`
- load: \`wrk -t1 -c$connections -d$duration --latency\` after a $warmup warm-up,
  one server at a time
- setup: marquee --http.threads=1, nginx worker_processes 1; $pinning
- commit $commit; $(nproc) cores; body $body_bytes bytes

| server | requests/s | p99 latency (ms) |
|---|---:|---:|
| marquee | $m_rps | $m_p99 |
| nginx | $n_rps | $n_p99 |
| ratio marquee/nginx | $rps_ratio | $p99_ratio |
ENTRY
    log "appended to $results"
}

main() {
    local m_port n_port ctype
    [[ -x $bin ]] || die "$bin is not built; run: make bench"
    command -v wrk >/dev/null || die "wrk is missing; run: scripts/deps.sh"
    command -v nginx >/dev/null || die "nginx is missing; run scripts/deps.sh"

    # One core for the server under test, another for the load, so that
    # wrk does not steal the server's core.
    if (($(nproc) >= 2)); then
        server_cpu=(taskset -c 0)
        load_cpu=(taskset -c 1)
        pinning="servers pinned to CPU 0, wrk to CPU 1"
    else
        server_cpu=()
        load_cpu=()
        pinning="one core: servers and wrk share it"
    fi

    work=$(mktemp -d /tmp/marquee-bench.XXXXXX)
    # nginx's worker runs as nobody and must read the static file.
    chmod 755 "$work"
    mkdir -p "$work/static"

    log "one server thread each: marquee --http.threads=1," \
        "nginx worker_processes 1; $pinning"
    m_port=$(free_port)
    start_marquee "$m_port"

    curl -sS -f -D "$work/headers" -o "$work/static/show.json" \
        "http://127.0.0.1:$m_port$path" ||
        die "GET $path from marquee failed"
    chmod 644 "$work/static/show.json"
    ctype=$(awk -F': *' 'tolower($1) == "content-type" {
        sub(/\r$/, "", $2); print $2 }' "$work/headers")
    [[ -n $ctype ]] || die "marquee sent no Content-Type for $path"
    body_bytes=$(wc -c <"$work/static/show.json")
    log "GET $path: $body_bytes bytes of $ctype"

    n_port=$(free_port)
    start_nginx "$n_port" "$ctype"
    curl -sS -f -o "$work/nginx-body" "http://127.0.0.1:$n_port$path"
    cmp -s "$work/nginx-body" "$work/static/show.json" ||
        die "nginx does not serve the same bytes"

    measure marquee "http://127.0.0.1:$m_port$path"
    m_rps=$rps m_p99=$p99_ms
    measure nginx "http://127.0.0.1:$n_port$path"
    n_rps=$rps n_p99=$p99_ms

    rps_ratio=$(ratio "$m_rps" "$n_rps")
    p99_ratio=$(ratio "$m_p99" "$n_p99")
    printf '\n%-22s %12s %14s\n' server requests/s "p99 (ms)"
    printf '%-22s %12s %14s\n' marquee "$m_rps" "$m_p99" nginx "$n_rps" \
        "$n_p99" "ratio marquee/nginx" "$rps_ratio" "$p99_ratio"
    printf '\nrequests/s ratio %s (goal: at least %s); p99 ratio %s' \
        "$rps_ratio" "$goal_ratio" "$p99_ratio"
    printf ' (lower is better)\n\n'

    append_results
}

main "$@"
