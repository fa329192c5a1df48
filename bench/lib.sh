# shellcheck shell=bash
# bench/lib.sh - helpers every benchmark script of bench/ sources.
#
# A script sets, before using them: ready_timeout_s (wait_for), and for
# run_wrk, load_cpu (the taskset prefix of the load generator, an array)
# and a wrk_pid variable its cleanup stops.
# shellcheck disable=SC2154 # those globals are the sourcing script's

log() { printf 'bench: %s\n' "$*"; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }

# stop_pid PID: SIGTERM to PID if it still runs, then waits for it.
stop_pid() {
    local pid=$1
    if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0));
print(s.getsockname()[1])'
}

# wait_for URL PID NAME LOG: waits until URL answers 200 while PID lives.
wait_for() {
    local url=$1 pid=$2 name=$3 logfile=$4 deadline
    deadline=$((SECONDS + ready_timeout_s))
    while ((SECONDS < deadline)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 20 "$logfile" >&2 || true
            die "$name exited before it was ready"
        fi
        if [[ $(curl -s -o /dev/null -w '%{http_code}' "$url") == 200 ]]
        then
            return 0
        fi
        sleep 0.1
    done
    tail -n 20 "$logfile" >&2 || true
    die "$name not ready within ${ready_timeout_s}s"
}

# to_ms VALUE: wrk's "812.00us" / "3.21ms" / "1.02s" in milliseconds.
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0
        if (v ~ /us$/) n /= 1000
        else if (v ~ /ms$/) n += 0
        else if (v ~ /s$/) n *= 1000
        printf "%.3f", n }'
}

# run_wrk OUTPUT ARGS...: runs wrk in the background and waits for it, so
# that a signal to the script is handled at once, not after the run.
run_wrk() {
    local out=$1
    shift
    "${load_cpu[@]}" wrk "$@" >"$out" &
    wrk_pid=$!
    wait "$wrk_pid" || die "wrk $* failed"
    wrk_pid=""
}
