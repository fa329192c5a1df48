#!/usr/bin/env bash
# Benchmark: the marquee gateway against HAProxy and nginx (Debian's
# packages), each proxying GET /v1/shows/1 to the same upstream, one catalog
# instance (demo data, --http.threads=1).  Every proxy gets one worker
# thread, keeps its connections to the upstream alive, logs no request and
# caches nothing.  The upstream is also measured alone, as a reference.
#
# Pinning, on a machine with two cores or more: by default the proxy under
# test on the first core, the upstream and wrk on the second.  The proxy is
# the thing measured, so it gets a core of its own, and what the upstream
# and wrk cost is the same for every proxy; when that second core is the
# busier one, requests per second tell less about the proxies than CPU per
# request does, so the table shows how busy each core was.
# BENCH_PINNING=shared puts the proxy and the upstream on the first core and
# wrk alone on the second, as bench/catalog_vs_nginx.sh does: then every
# microsecond the proxy saves goes to the upstream, and requests per second
# follow the proxy's cost.  Loopback only.
#
# All the proxies run from the start, but only one is under load at a time:
# in each round the upstream alone, HAProxy, nginx and the gateway in turn,
# each warmed up then measured.  Three rounds by default, and each row is
# the round with the median requests per second, so that a burst of other
# work on a shared machine spoils one round of each rather than one proxy.
#
# For each, wrk's requests per second and latency, and the CPU time
# (utime + stime from /proc/PID/stat, its children included: nginx's worker
# is a child of its master) that the proxy and the upstream spent during the
# measured run, per request.  Prints a table and the ratios gateway/HAProxy
# and gateway/nginx, and appends them to bench/RESULTS.md.
#
# Goal: requests per second at least 1.1 x HAProxy's, p99 no worse than
# HAProxy's, CPU per request at most 0.9 x HAProxy's.
#
# Knobs (environment): MARQUEE_BIN (default build/release/marquee),
# BENCH_DURATION (10s), BENCH_WARMUP (2s), BENCH_CONNECTIONS (64),
# BENCH_PINNING (split or shared, see above), BENCH_ROUNDS (3), and
# BENCH_GATEWAY (true; false measures the upstream and the two anchors
# only and appends nothing, for a binary without the gateway role).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

bin=${MARQUEE_BIN:-build/release/marquee}
duration=${BENCH_DURATION:-10s}
warmup=${BENCH_WARMUP:-2s}
connections=${BENCH_CONNECTIONS:-64}
with_gateway=${BENCH_GATEWAY:-true}
pin_mode=${BENCH_PINNING:-split}
rounds=${BENCH_ROUNDS:-3}
path=/v1/shows/1
results=bench/RESULTS.md
goal_rps=1.1
goal_p99=1.0
goal_cpu=0.9
ready_timeout_s=20

upstream_pid=""
proxy_pid=""
proxy_pids=()
wrk_pid=""
work=""

# shellcheck source=bench/lib.sh
source bench/lib.sh

cleanup() {
    local pid
    stop_pid "$wrk_pid"
    for pid in "${proxy_pids[@]}" "$proxy_pid"; do
        stop_pid "$pid"
    done
    stop_pid "$upstream_pid"
    if [[ -n $work ]]; then
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# cpu_ticks PID: utime + stime of PID and of its live children, in clock
# ticks.  The command name in /proc/PID/stat may hold spaces, so the fields
# are counted from its closing parenthesis: utime and stime are the 14th and
# 15th fields, the 12th and 13th after it.
cpu_ticks() {
    local total=0 p stat
    for p in "$1" $(pgrep -P "$1" || true); do
        stat=$(<"/proc/$p/stat") || die "process $p is gone"
        stat=${stat##*) }
        total=$((total + $(awk '{ print $12 + $13 }' <<<"$stat")))
    done
    printf '%s\n' "$total"
}

# core_ticks CPU: busy and total jiffies of one core, from /proc/stat;
# nothing when CPU is empty (one core, nothing pinned).
core_ticks() {
    [[ -n $1 ]] || return 0
    awk -v c="cpu$1" '$1 == c {
        t = 0
        for (i = 2; i <= NF; i++) t += $i
        print t - $5 - $6, t }' /proc/stat
}

# measure NAME URL PROXY_PID: warms up, runs wrk, and sets rps, p50_ms,
# p99_ms, proxy_us (CPU microseconds per request, empty with no proxy),
# proxy_use (its busy share of one core, in %), upstream_us, and
# proxy_core_busy and load_core_busy: how busy the proxy's core and that of
# wrk were, in %, whatever ran there; work of others on a shared machine
# shows as the first above proxy_use.
measure() {
    local name=$1 url=$2 ppid=$3 out requests
    local p0=0 p1=0 u0 u1 c0 c1 l0 l1 t0 t1
    out="$work/wrk-$name.txt"
    log "$name: warm-up $warmup"
    run_wrk /dev/null -t1 -c"$connections" -d"$warmup" "$url"
    log "$name: wrk -t1 -c$connections -d$duration --latency $url"
    [[ -z $ppid ]] || p0=$(cpu_ticks "$ppid")
    u0=$(cpu_ticks "$upstream_pid")
    c0=$(core_ticks "$proxy_core")
    l0=$(core_ticks "$load_core")
    t0=$(date +%s.%N)
    run_wrk "$out" -t1 -c"$connections" -d"$duration" --latency "$url"
    t1=$(date +%s.%N)
    [[ -z $ppid ]] || p1=$(cpu_ticks "$ppid")
    u1=$(cpu_ticks "$upstream_pid")
    c1=$(core_ticks "$proxy_core")
    l1=$(core_ticks "$load_core")
    sed 's/^/    /' "$out"
    if grep -q -e 'Non-2xx' -e 'Socket errors' "$out"; then
        die "$name: wrk saw errors or non-2xx answers; figures not recorded"
    fi
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
    requests=$(awk '$2 == "requests" && $3 == "in" {print $1}' "$out")
    # shellcheck disable=SC2034 # read through save_row
    p50_ms=$(to_ms "$(awk '$1 == "50%" {print $2}' "$out")")
    p99_ms=$(to_ms "$(awk '$1 == "99%" {print $2}' "$out")")
    [[ -n $rps && -n $requests ]] || die "$name: no figures in wrk's output"
    upstream_us=$(per_request "$((u1 - u0))" "$requests")
    proxy_us="" proxy_use=""
    if [[ -n $ppid ]]; then
        proxy_us=$(per_request "$((p1 - p0))" "$requests")
        proxy_use=$(awk -v d="$((p1 - p0))" -v hz="$clk_tck" -v a="$t0" \
            -v b="$t1" 'BEGIN { printf "%.0f", 100 * d / hz / (b - a) }')
    fi
    proxy_core_busy=$(busy_share "$c0" "$c1")
    load_core_busy=$(busy_share "$l0" "$l1")
    log "$name: $rps requests/s, p99 $p99_ms ms, proxy ${proxy_us:--} us" \
        "per request (${proxy_use:--}% of a core), upstream $upstream_us us" \
        "per request; CPU $proxy_core ${proxy_core_busy:--}% busy," \
        "CPU $load_core ${load_core_busy:--}% busy"
}

# busy_share BEFORE AFTER: the busy share in % of a core between two
# core_ticks readings; empty when there is no reading (one core).
busy_share() {
    [[ -n $1 ]] || return 0
    awk -v a="$1" -v b="$2" 'BEGIN {
        split(a, x, " "); split(b, y, " ")
        printf "%.0f", 100 * (y[1] - x[1]) / (y[2] - x[2]) }'
}

# per_request TICKS REQUESTS: CPU microseconds per request.
per_request() {
    awk -v t="$1" -v n="$2" -v hz="$clk_tck" \
        'BEGIN { printf "%.2f", (n > 0 ? t * 1000000 / hz / n : 0) }'
}

ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'
}

# verdict VALUE OP GOAL: "met" or "not met" for VALUE >= or <= GOAL.
verdict() {
    awk -v v="$1" -v op="$2" -v g="$3" 'BEGIN {
        ok = (op == ">=") ? (v >= g) : (v <= g)
        print (ok ? "met" : "not met") }'
}

start_upstream() {
    upstream_port=$(free_port)
    "${upstream_cpu[@]}" "$bin" catalog --http.host=127.0.0.1 \
        --http.port="$upstream_port" --http.threads=1 --catalog.demo=true \
        --store.path="$work/catalog.db" 2>"$work/upstream.log" &
    upstream_pid=$!
    wait_for "http://127.0.0.1:$upstream_port/readyz" "$upstream_pid" \
        upstream "$work/upstream.log"
}

start_haproxy() {
    local port=$1
    cat >"$work/haproxy.cfg" <<CONF
global
    nbthread 1
    maxconn 4096

defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    # Idle upstream connections serve any client: the keep-alive pool.
    http-reuse always
    # The gateway appends the client's address; so do the anchors.
    option forwardfor

frontend bench
    bind 127.0.0.1:$port
    default_backend catalog

backend catalog
    server catalog1 127.0.0.1:$upstream_port
CONF
    "${proxy_cpu[@]}" haproxy -db -f "$work/haproxy.cfg" \
        2>"$work/haproxy.log" &
    proxy_pid=$!
    wait_for "http://127.0.0.1:$port$path" "$proxy_pid" haproxy \
        "$work/haproxy.log"
}

start_nginx() {
    local port=$1 tmp=$work/nginx-tmp
    mkdir -p "$tmp"
    cat >"$work/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $work/nginx.pid;
error_log stderr warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_timeout 65s;
    keepalive_requests 1000000;
    client_body_temp_path $tmp/body;
    proxy_temp_path $tmp/proxy;
    fastcgi_temp_path $tmp/fastcgi;
    uwsgi_temp_path $tmp/uwsgi;
    scgi_temp_path $tmp/scgi;
    upstream catalog {
        server 127.0.0.1:$upstream_port;
        keepalive 64;
        # Its default closes an upstream connection after 1000 requests;
        # HAProxy and the gateway have no such limit.
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$port;
        location / {
            proxy_pass http://catalog;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
        }
    }
}
CONF
    "${proxy_cpu[@]}" nginx -p "$work" -c "$work/nginx.conf" -e stderr \
        2>"$work/nginx.log" &
    proxy_pid=$!
    wait_for "http://127.0.0.1:$port$path" "$proxy_pid" nginx \
        "$work/nginx.log"
}

start_gateway() {
    local port=$1
    cat >"$work/routes.json" <<JSON
{"pools": {"catalog": {"instances": ["127.0.0.1:$upstream_port"]}},
 "routes": [{"prefix": "/v1/", "pool": "catalog"}]}
JSON
    "${proxy_cpu[@]}" "$bin" gateway --http.host=127.0.0.1 \
        --http.port="$port" --http.threads=1 \
        --gateway.accounts.path="$work/accounts.db" \
        --gateway.routes="$work/routes.json" 2>"$work/gateway.log" &
    proxy_pid=$!
    # The pool's instance joins once its health checks pass; until then
    # the gateway answers 503, and wait_for asks again.
    wait_for "http://127.0.0.1:$port$path" "$proxy_pid" gateway \
        "$work/gateway.log"
}

# start_proxy NAME: starts the proxy and checks that it passes the
# upstream's bytes; its pid and port go to NAME_pid and NAME_port.
start_proxy() {
    local name=$1 port
    port=$(free_port)
    "start_$name" "$port"
    proxy_pids+=("$proxy_pid")
    printf -v "${name}_pid" '%s' "$proxy_pid"
    printf -v "${name}_port" '%s' "$port"
    proxy_pid=""
    curl -sS -f -o "$work/body-$name" "http://127.0.0.1:$port$path" ||
        die "GET $path through $name failed"
    cmp -s "$work/body-$name" "$work/body-direct" ||
        die "$name does not pass the upstream's bytes"
}

figures=(rps p50_ms p99_ms proxy_us proxy_use upstream_us proxy_core_busy
    load_core_busy)

# save_row NAME: keeps the figures of the last measure under NAME.
save_row() {
    local v
    for v in "${figures[@]}"; do
        printf -v "${1}_$v" '%s' "${!v}"
    done
}

# measure_round NAME ROUND: one measure of NAME, kept as NAME_rROUND.
measure_round() {
    local name=$1 pid_v=${1}_pid port_v=${1}_port port pid
    if [[ $name == direct ]]; then
        port=$upstream_port pid=""
    else
        port=${!port_v} pid=${!pid_v}
    fi
    log "round $2 of $rounds"
    measure "$name" "http://127.0.0.1:$port$path" "$pid"
    save_row "${name}_r$2"
}

# pick_median NAME: NAME's figures are those of its round with the median
# requests per second (the lower of the two middle ones when even), so a
# row stays the figures of one run.
pick_median() {
    local name=$1 r v rps_v pick src
    pick=$(for ((r = 1; r <= rounds; r++)); do
        rps_v=${name}_r${r}_rps
        printf '%s %s\n' "${!rps_v}" "$r"
    done | sort -g | awk -v m="$(((rounds + 1) / 2))" 'NR == m {print $2}')
    for v in "${figures[@]}"; do
        src=${name}_r${pick}_$v
        printf -v "${name}_$v" '%s' "${!src}"
    done
    log "$name: median of $rounds rounds by requests/s is round $pick"
}

# percent VALUE: VALUE% when there is a value.
percent() {
    [[ -z $1 ]] || printf '%s%%' "$1"
}

# row LABEL NAME: one table line of NAME's figures, in Markdown.
row() {
    local n=$2
    local rps_v=${n}_rps p50_v=${n}_p50_ms p99_v=${n}_p99_ms
    local pu_v=${n}_proxy_us pc_v=${n}_proxy_use up_v=${n}_upstream_us
    local cb_v=${n}_proxy_core_busy lb_v=${n}_load_core_busy
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$1" \
        "${!rps_v}" "${!p50_v}" "${!p99_v}" "${!pu_v}" \
        "$(percent "${!pc_v}")" "${!up_v}" "$(percent "${!cb_v}")" \
        "$(percent "${!lb_v}")"
}

# ratio_row LABEL A B: gateway over an anchor, for requests/s, p99, CPU.
ratio_row() {
    local a=$2 b=$3
    local ar=${a}_rps br=${b}_rps ap=${a}_p99_ms bp=${b}_p99_ms
    local ac=${a}_proxy_us bc=${b}_proxy_us
    printf '| %s | %s | | %s | %s | | | | |\n' "$1" \
        "$(ratio "${!ar}" "${!br}")" "$(ratio "${!ap}" "${!bp}")" \
        "$(ratio "${!ac}" "${!bc}")"
}

table() {
    printf '| path | requests/s | p50 (ms) | p99 (ms) |'
    printf ' proxy CPU (us/request) | proxy, of a core |'
    printf ' upstream CPU (us/request) | CPU %s busy | CPU %s busy |\n' \
        "${proxy_core:-?}" "${load_core:-?}"
    printf '|---|---:|---:|---:|---:|---:|---:|---:|---:|\n'
    row "upstream alone (direct)" direct
    row "HAProxy $haproxy_version" haproxy
    row "nginx $nginx_version" nginx
    if [[ $with_gateway == true ]]; then
        row "marquee gateway" gateway
        ratio_row "ratio gateway/HAProxy" gateway haproxy
        ratio_row "ratio gateway/nginx" gateway nginx
    fi
}

# shellcheck disable=SC2154 # the NAME_ figures are set by save_row
goals() {
    local r p c
    r=$(ratio "$gateway_rps" "$haproxy_rps")
    p=$(ratio "$gateway_p99_ms" "$haproxy_p99_ms")
    c=$(ratio "$gateway_proxy_us" "$haproxy_proxy_us")
    cat <<GOALS
Gateway against HAProxy:

- requests/s ratio $r, goal at least $goal_rps: $(verdict "$r" '>=' "$goal_rps")
- p99 ratio $p, goal at most $goal_p99: $(verdict "$p" '<=' "$goal_p99")
- CPU per request ratio $c, goal at most $goal_cpu: \
$(verdict "$c" '<=' "$goal_cpu")
GOALS
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

## $stamp: proxies, gateway vs HAProxy vs nginx, GET $path

- command: \`BENCH_ROUNDS=$rounds BENCH_DURATION=$duration \
BENCH_PINNING=$pin_mode bench/proxy.sh\`
- load: \`wrk -t1 -c$connections -d$duration --latency\` after a $warmup
  warm-up, one proxy at a time, all to one upstream: marquee catalog
  --http.threads=1, demo data; $rounds rounds of each in turn, each row the
  round with the median requests/s
- setup: marquee gateway --http.threads=1; HAProxy nbthread 1,
  http-reuse always; nginx worker_processes 1, upstream keepalive 64;
  access logs off, X-Forwarded-For added by each
- pinning: $pinning
- CPU: utime + stime of the proxy (and its children) and of the upstream
  over the measured run, over wrk's request count
- commit $commit; $(nproc) cores; body $body_bytes bytes

$(table)

$(goals)
ENTRY
    log "appended to $results"
}

main() {
    local body_ctype name round names
    [[ -x $bin ]] || die "$bin is not built; run: make bench"
    command -v wrk >/dev/null || die "wrk is missing; run: scripts/deps.sh"
    command -v nginx >/dev/null || die "nginx is missing; run scripts/deps.sh"
    command -v haproxy >/dev/null ||
        die "haproxy is missing; run scripts/deps.sh"
    [[ $rounds =~ ^[1-9][0-9]*$ ]] ||
        die "BENCH_ROUNDS is a count of rounds, not \"$rounds\""
    [[ $pin_mode == split || $pin_mode == shared ]] ||
        die "BENCH_PINNING is split or shared, not \"$pin_mode\""
    case $with_gateway in
    true)
        [[ $("$bin" gateway --help 2>&1 || true) == *gateway.routes* ]] ||
            die "$bin has no gateway role;" \
                "BENCH_GATEWAY=false measures the anchors alone"
        ;;
    false) log "BENCH_GATEWAY=false: no gateway, nothing appended" ;;
    *) die "BENCH_GATEWAY is true or false, not \"$with_gateway\"" ;;
    esac
    clk_tck=$(getconf CLK_TCK)
    haproxy_version=$(haproxy -v | awk 'NR == 1 {print $3}')
    nginx_version=$(nginx -v 2>&1 | sed -n 's|.*nginx/\([^ ]*\).*|\1|p')

    if (($(nproc) >= 2)) && [[ $pin_mode == split ]]; then
        proxy_cpu=(taskset -c 0)
        upstream_cpu=(taskset -c 1)
        load_cpu=(taskset -c 1)
        proxy_core=0
        load_core=1
        pinning="proxy pinned to CPU 0, upstream and wrk to CPU 1"
    elif (($(nproc) >= 2)); then
        proxy_cpu=(taskset -c 0)
        upstream_cpu=(taskset -c 0)
        load_cpu=(taskset -c 1)
        proxy_core=0
        load_core=1
        pinning="proxy and upstream pinned to CPU 0, wrk to CPU 1"
    else
        proxy_cpu=()
        upstream_cpu=()
        load_cpu=()
        proxy_core=""
        load_core=""
        pinning="one core: proxy, upstream and wrk share it"
    fi

    work=$(mktemp -d /tmp/marquee-proxy.XXXXXX)
    # nginx's worker runs as nobody and must reach its temporary folders.
    chmod 755 "$work"
    log "one thread each; $pinning"

    start_upstream
    curl -sS -f -D "$work/headers" -o "$work/body-direct" \
        "http://127.0.0.1:$upstream_port$path" ||
        die "GET $path from the upstream failed"
    body_bytes=$(wc -c <"$work/body-direct")
    body_ctype=$(awk -F': *' 'tolower($1) == "content-type" {
        sub(/\r$/, "", $2); print $2 }' "$work/headers")
    log "GET $path: $body_bytes bytes of $body_ctype"

    names=(direct haproxy nginx)
    if [[ $with_gateway == true ]]; then
        names+=(gateway)
    fi
    for name in "${names[@]:1}"; do
        start_proxy "$name"
    done
    # Rounds of every path in turn, so that a disturbance of the machine
    # hits one round of each rather than all of one.  An idle proxy costs
    # nothing but the gateway's health checks (one request each 2 s).
    for ((round = 1; round <= rounds; round++)); do
        for name in "${names[@]}"; do
            measure_round "$name" "$round"
        done
    done
    for name in "${names[@]}"; do
        pick_median "$name"
    done

    printf '\n'
    table
    printf '\n'
    if [[ $with_gateway == true ]]; then
        goals
        printf '\n'
        append_results
    fi
}

main "$@"
