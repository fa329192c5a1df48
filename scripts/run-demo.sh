#!/usr/bin/env bash
# Runs the gateway in front of the catalog (with demo data) and the booking
# service, and the payment service beside them, in the foreground, for a
# person to try.  `make run` builds the release binary first.  The databases
# live in var/ of the repository; delete them to start again from the demo
# data.  Ctrl-C stops them all, gracefully.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

bin=build/release/marquee
host=127.0.0.1
gateway_port=8080
catalog_port=8081
booking_port=8082
payment_port=8083
gateway=http://$host:$gateway_port
catalog=http://$host:$catalog_port
booking=http://$host:$booking_port
payment=http://$host:$payment_port
token=demo-admin-token

if [[ ! -x $bin ]]; then
    echo "run-demo: $bin is not built; run: make run" >&2
    exit 1
fi
mkdir -p var

pids=()
stop() {
    trap - INT TERM
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
}
trap stop INT TERM

# Host and ports are given so that the addresses printed below are the
# ones served, whatever a MARQUEE_HTTP_* variable in the environment says.
# Show events go from the catalog's outbox through the queue in
# var/queue.db to booking; booking starts first so that its queue is
# declared before the catalog publishes.
"$bin" booking --http.host="$host" --http.port="$booking_port" \
    --booking.catalog_url="$catalog" --store.path=var/booking.db \
    --mq.path=var/queue.db &
pids+=($!)
for _ in $(seq 1 100); do
    curl -sf "$booking/readyz" >/dev/null 2>&1 && break
    sleep 0.1
done
"$bin" catalog --http.host="$host" --http.port="$catalog_port" \
    --catalog.demo=true --catalog.admin_token="$token" \
    --store.path=var/catalog.db --mq.path=var/queue.db &
pids+=($!)
"$bin" payment --http.host="$host" --http.port="$payment_port" \
    --payment.admin_token="$token" --store.path=var/payment.db &
pids+=($!)
# The gateway's default routes file sends to the ports above.
"$bin" gateway --http.host="$host" --http.port="$gateway_port" \
    --gateway.routes=deploy/gateway/routes.json --gateway.static_dir=web \
    --gateway.admin_token="$token" &
pids+=($!)

for url in "$catalog" "$booking" "$payment" "$gateway"; do
    for _ in $(seq 1 100); do
        curl -sf "$url/readyz" >/dev/null 2>&1 && break
        sleep 0.1
    done
done

cat <<INFO

Marquee, with demo data (Ctrl-C stops it):
  gateway  $gateway   the public door: $gateway/ in a browser
           ops dashboard: $gateway/ops/#token=$token
  catalog  $catalog   (admin routes take -H 'Authorization: Bearer $token')
  booking  $booking
  payment  $payment   (called by services, not routed by the gateway)
Try, through the gateway:
  curl -s $gateway/v1/shows/1
  curl -s $gateway/v1/shows/27/seats
  curl -s -H 'X-Customer-Id: me' -H 'Content-Type: application/json' \\
       -d '{"seats":["A1","A2"]}' $gateway/v1/shows/27/holds
  curl -s -H 'Authorization: Bearer $token' $gateway/admin/pools
Metrics (Prometheus text format): GET /metrics on every port above
Databases: var/catalog.db, var/booking.db, var/payment.db, var/queue.db
(delete them to start again)

INFO
wait "${pids[@]}"
