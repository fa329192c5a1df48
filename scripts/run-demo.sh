#!/usr/bin/env bash
# Runs the catalog service with demo data, in the foreground, for a person to
# try.  `make run` builds the release binary first.  The database lives in
# var/ of the repository; delete var/catalog.db to start again from the demo
# data.  Ctrl-C stops the service.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

bin=build/release/marquee
host=127.0.0.1
port=8081
url=http://$host:$port
token=demo-admin-token

if [[ ! -x $bin ]]; then
    echo "run-demo: $bin is not built; run: make run" >&2
    exit 1
fi
mkdir -p var

cat <<INFO
Marquee catalog, with demo data, at $url (Ctrl-C stops it)
Try:
  curl -s $url/v1/shows/1
  curl -si $url/readyz
Admin routes take: -H 'Authorization: Bearer $token'
Database: var/catalog.db (delete it to start again from the demo data)

INFO

# The host and port are given so that the address printed above is the one
# served, whatever a MARQUEE_HTTP_* variable in the environment says.
exec "$bin" catalog --http.host="$host" --http.port="$port" \
    --catalog.demo=true --catalog.admin_token="$token" \
    --store.path=var/catalog.db
