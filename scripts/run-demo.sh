#!/usr/bin/env bash
# Runs the whole platform on this machine for a person to try, through
# `marquee up` with deploy/topology/demo.json: the gateway on :8080 in front
# of the catalog (with demo data) and booking, payment and notify beside
# them, each instance on a port from 8100 up, supervised (restarted when it
# dies) and autoscaled.  `make run` builds the release binary first.  The
# databases, the queue and every instance's log live in var/ of the
# repository; delete it to start again from the demo data.  Ctrl-C stops
# everything, gracefully, the gateway first.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

bin=build/release/marquee
host=127.0.0.1
gateway=http://$host:8080
admin=http://$host:8090
token=demo-admin-token

if [[ ! -x $bin ]]; then
    echo "run-demo: $bin is not built; run: make run" >&2
    exit 1
fi

# The ports are given so that the addresses printed below are the ones
# served, whatever a MARQUEE_* variable in the environment says.
"$bin" up deploy/topology/demo.json --http.host="$host" --http.port=8090 \
    --up.gateway_port=8080 --up.port_base=8100 --up.data_dir=var \
    --up.admin_token="$token" &
up=$!
stop() {
    trap - INT TERM
    kill -TERM "$up" 2>/dev/null || true
    wait "$up" 2>/dev/null || true
    exit 0
}
trap stop INT TERM

# up answers /readyz once every role has started.
for _ in $(seq 1 600); do
    curl -sf "$admin/readyz" >/dev/null 2>&1 && break
    if ! kill -0 "$up" 2>/dev/null; then
        echo "run-demo: marquee up stopped; its reason is above" >&2
        exit 1
    fi
    sleep 0.1
done

cat <<INFO

Marquee, with demo data (Ctrl-C stops it):
  gateway  $gateway   the public door: $gateway/ in a browser
           ops dashboard: $gateway/ops/#token=$token
  up       $admin   marquee up's own /status and /metrics
  The instances listed above run behind the gateway (payment is called
  by booking, not routed); admin routes take
  -H 'Authorization: Bearer $token'.
Try, through the gateway:
  curl -s $gateway/v1/shows/1
  curl -s $gateway/v1/shows/27/seats
  curl -s -H 'Content-Type: application/json' -d '{"email":"me@example.com",
       "password":"demo-password","name":"Me"}' $gateway/v1/accounts
  curl -s -H 'Content-Type: application/json' -d '{"email":"me@example.com",
       "password":"demo-password"}' $gateway/v1/sessions
  curl -s -H 'Authorization: Bearer <its access_token>' \\
       -H 'Content-Type: application/json' \\
       -d '{"seats":["A1","A2"]}' $gateway/v1/shows/27/holds
  curl -s -H 'Authorization: Bearer $token' $gateway/admin/pools
  $bin status            what runs, restarts, scaling decisions
  kill -9 <a pid above>  and watch it come back in: $bin status
Metrics (Prometheus text format): GET /metrics on every port above
Data and logs: var/ (catalog.db, booking.db, payment.db, notify.db,
accounts.db, queue.db, logs/<instance>.log; delete var/ to start again)

INFO
wait "$up"
