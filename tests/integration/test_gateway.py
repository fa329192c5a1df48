"""The gateway: routing, hygiene, static pages, pools that change at run
time, and the resilience mechanisms (health checks, outlier ejection, the
circuit breaker, retries, consistent hashing) against real catalog and
booking processes.

One catalog with the demo data and three booking instances sharing one
database run for the whole module, with the fault switch on
(--http.faults) and access logs, so that a test can make an instance fail
on purpose and count the requests it saw.  Each test starts its own
gateway with a routes file of its own and short intervals (checks every
200 ms, ejections and open breakers of 1 s).  Answers name the instance
that served them (gateway.debug_headers adds X-Upstream).
"""

import http.server
import json
import os
import shutil
import signal
import socketserver
import subprocess
import tempfile
import threading
import time
import unittest
import uuid

from support import ApiSchema, HOST, Service, free_port, marquee_bin, \
    repo_path
from test_logs import LINE_RE, log_lines

DEMO = repo_path("data", "demo", "catalog.json")
TOKEN = "gateway-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
POLL_S = 0.05

GATEWAY_FLAGS = {
    "gateway.admin_token": TOKEN,
    "gateway.static_dir": repo_path("web"),
    "gateway.debug_headers": "true",
    "gateway.health.interval_ms": "200",
    "gateway.health.fast_interval_ms": "100",
    "gateway.health.timeout_ms": "300",
    "gateway.health.slow_start_ms": "0",
    "gateway.outlier.consecutive": "3",
    "gateway.outlier.base_ejection_ms": "1000",
    "gateway.outlier.max_ejection_ms": "1000",
    "gateway.breaker.open_ms": "1000",
    "http.threads": "2",
    # The accounts database in the gateway's own folder, and passwords
    # hashed at the cheapest Argon2id settings: tests sign in often.
    "gateway.accounts.path": "gateway.db",
    "gateway.password_opslimit": "1",
    "gateway.password_memlimit_kib": "8",
}


def addr(svc):
    return f"{HOST}:{svc.port}"


def wait_for(what, fn, timeout=10.0):
    """Polls fn until it returns something true; returns that."""
    deadline = time.monotonic() + timeout
    while True:
        got = fn()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(POLL_S)


def routes_doc(booking, catalog=None, hashed=True, seat_timeouts=None,
               extra_pools=None, extra_routes=None):
    """A routes file: booking's paths to pool booking, the rest of /v1/
    to pool catalog."""
    seats = {"pattern": "/v1/shows/{show_id}/seats", "pool": "booking"}
    holds = {"pattern": "/v1/shows/{show_id}/holds", "pool": "booking"}
    hold = {"pattern": "/v1/holds/{hold_id}", "pool": "booking"}
    hold_op = {"pattern": "/v1/holds/{hold_id}/{op}", "pool": "booking"}
    if hashed:
        seats["hash_param"] = holds["hash_param"] = "show_id"
        hold["hash_param"] = hold_op["hash_param"] = "hold_id"
    seats.update(seat_timeouts or {})
    pools = {"booking": {"instances": booking,
                         "balance": "hash" if hashed else "p2c"},
             "catalog": {"instances": catalog or []}}
    pools.update(extra_pools or {})
    return {"pools": pools,
            "routes": (extra_routes or []) + [
                seats, holds, hold, hold_op,
                {"prefix": "/v1/", "pool": "catalog"}]}


class Gateway(Service):
    """`marquee gateway` with a routes file written for the test."""

    def __init__(self, routes, flags=None):
        fd, self.routes_path = tempfile.mkstemp(prefix="gw-routes-",
                                                suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump(routes, f)
        merged = dict(GATEWAY_FLAGS)
        merged["gateway.routes"] = self.routes_path
        merged.update(flags or {})
        super().__init__("gateway", flags=merged)

    def close(self):
        super().close()
        os.unlink(self.routes_path)

    def pools(self):
        status, _, body = self.json("GET", "/admin/pools", headers=AUTH)
        assert status == 200, (status, body)
        return {p["name"]: p for p in body["pools"]}

    def instance(self, pool, svc):
        for i in self.pools()[pool]["instances"]:
            if i["address"] == addr(svc):
                return i
        return None

    def served_by(self, path, headers=None):
        status, got, _ = self.request("GET", path, headers=headers)
        return status, got.get("x-upstream")


class EchoHandler(http.server.BaseHTTPRequestHandler):
    """Answers every GET with the request headers it received, and adds
    hop-by-hop headers of its own that the gateway must drop."""

    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = json.dumps({k.lower(): v for k, v in self.headers.items()})
        body = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "keep-alive, X-Hop")
        self.send_header("X-Hop", "must-not-pass")
        self.send_header("Keep-Alive", "timeout=5")
        self.send_header("X-Kept", "yes")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class EchoServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


class GatewayTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.catalog = Service("catalog", flags={
            "catalog.demo": "true", "catalog.demo_file": DEMO})
        cls.bookings = []
        try:
            db = None
            for _ in range(3):
                flags = {"booking.catalog_url": cls.catalog.url,
                         "http.faults": "true", "http.access_log": "true"}
                if db is not None:
                    flags["store.path"] = db
                svc = Service("booking", flags=flags)
                cls.bookings.append(svc)
                db = db or svc.db_path
        except BaseException:
            cls.tearDownClass()
            raise
        cls.b1, cls.b2, cls.b3 = cls.bookings

    @classmethod
    def tearDownClass(cls):
        for svc in cls.bookings + [cls.catalog]:
            try:
                svc.stop()
            finally:
                svc.close()

    def setUp(self):
        self.gw = None

    def tearDown(self):
        for svc in self.bookings:
            if svc.proc is not None:
                svc.proc.send_signal(signal.SIGCONT)
                self.set_fault(svc, 0)
        if self.gw is not None:
            try:
                self.gw.stop()
                # The gateway's own lines (h2o writes a few of its own).
                for line in log_lines(self.gw):
                    if " gateway: " in line:
                        self.assertRegex(line, LINE_RE)
            finally:
                self.gw.close()

    def gateway(self, routes, flags=None):
        self.gw = Gateway(routes, flags)
        return self.gw

    def set_fault(self, svc, status, rate=1):
        code, _, body = svc.json("PUT", "/internal/v1/faults",
                                 {"status": status, "rate": rate})
        self.assertEqual(code, 200, body)

    def requests_seen(self, svc, method, request_id):
        """How many requests with this id the instance's access log has."""
        return sum(1 for line in svc.log().splitlines()
                   if "http: request " in line
                   and f"method={method} " in line
                   and line.endswith(f"id={request_id}"))

    def settled_count(self, svc, method, request_id, quiet_s=0.3):
        """requests_seen once it has not changed for quiet_s: an access
        line is written after its answer has gone out."""
        seen, since = -1, time.monotonic()
        deadline = since + 5
        while time.monotonic() < deadline:
            n = self.requests_seen(svc, method, request_id)
            if n != seen:
                seen, since = n, time.monotonic()
            elif time.monotonic() - since >= quiet_s:
                break
            time.sleep(POLL_S)
        return seen

    # ------------------------------------------------------------ routing

    def test_routing_matches_direct_answers(self):
        gw = self.gateway(routes_doc([addr(self.b1)], [addr(self.catalog)]))
        for svc, path in ((self.catalog, "/v1/cities"),
                          (self.catalog, "/v1/shows/5"),
                          (self.b1, "/v1/shows/5/seats")):
            direct = svc.json("GET", path)
            via = gw.json("GET", path)
            self.assertEqual(via[0], direct[0], path)
            self.assertEqual(via[2], direct[2], path)
            self.assertEqual(via[1]["content-type"],
                             direct[1]["content-type"])
        self.assertEqual(gw.served_by("/v1/shows/5/seats"),
                         (200, addr(self.b1)))

        # The request id goes upstream and comes back.
        rid = "gw-route-" + uuid.uuid4().hex[:8]
        status, got, _ = gw.request("GET", "/v1/shows/5/seats",
                                    headers={"X-Request-Id": rid})
        self.assertEqual((status, got["x-request-id"]), (200, rid))
        self.assertEqual(self.settled_count(self.b1, "GET", rid), 1)

        # A service's own 404 passes through; unrouted paths are the
        # gateway's 404.
        self.assertEqual(gw.request("GET", "/v1/shows/999999")[0], 404)
        for method, path in (("GET", "/internal/v1/faults"),
                             ("POST", "/internal/v1/show-events"),
                             ("GET", "/admin/nothing"),
                             ("GET", "/v2/cities")):
            status, got, body = gw.json(method, path, body=(
                {} if method == "POST" else None))
            self.assertEqual(status, 404, (method, path))
            self.assertEqual(body["type"], "/problems/not-found")

    def test_catch_all_route_cannot_reach_private_paths(self):
        gw = self.gateway({"pools": {"catalog": {"instances": [
            addr(self.catalog)]}},
            "routes": [{"prefix": "/", "pool": "catalog"}]})
        self.assertEqual(gw.served_by("/v1/cities"),
                         (200, addr(self.catalog)))
        for path in ("/internal/v1/faults", "/admin/pools/x", "/admin"):
            status, got, _ = gw.request("GET", path)
            self.assertEqual(status, 404, path)
            self.assertNotIn("x-upstream", got, path)

    def test_static_pages(self):
        gw = self.gateway(routes_doc([addr(self.b1)], [addr(self.catalog)]))
        status, got, body = gw.request("GET", "/")
        self.assertEqual(status, 200)
        self.assertTrue(got["content-type"].startswith("text/html"))
        self.assertIn(b"Marquee", body)
        self.assertIn(b'href="/v1/cities"', body)
        self.assertEqual(got["cache-control"], "no-cache")
        with open(repo_path("web", "index.html"), "rb") as f:
            self.assertEqual(body, f.read())

        status, again, body = gw.request(
            "GET", "/index.html", headers={"If-None-Match": got["etag"]})
        self.assertEqual((status, body), (304, b""))
        self.assertEqual(again["etag"], got["etag"])

        status, got, _ = gw.request("HEAD", "/")
        self.assertEqual(status, 200)
        for path in ("/missing.css", "/../README.md", "/.git/config"):
            status, _, body = gw.json("GET", path)
            self.assertEqual(status, 404, path)
            self.assertEqual(body["type"], "/problems/not-found")

    def test_static_folder_is_a_jail(self):
        web = tempfile.mkdtemp(prefix="gw-web-")
        try:
            with open(os.path.join(web, "style.css"), "w") as f:
                f.write("body { margin: 0 }\n")
            os.makedirs(os.path.join(web, "docs"))
            with open(os.path.join(web, "docs", "index.html"), "w") as f:
                f.write("<p>docs</p>\n")
            os.symlink("/etc/hostname", os.path.join(web, "leak.txt"))
            gw = self.gateway(routes_doc([addr(self.b1)],
                                         [addr(self.catalog)]),
                              flags={"gateway.static_dir": web})
            status, got, body = gw.request("GET", "/style.css")
            self.assertEqual((status, body), (200, b"body { margin: 0 }\n"))
            self.assertTrue(got["content-type"].startswith("text/css"))
            self.assertEqual(got["cache-control"], "public, max-age=300")
            status, got, body = gw.request("GET", "/docs/")
            self.assertEqual((status, body), (200, b"<p>docs</p>\n"))
            # A link out of the folder, and a folder without index.html.
            for path in ("/leak.txt", "/", "/docs"):
                status, _, body = gw.json("GET", path)
                self.assertEqual(status, 404, path)
        finally:
            shutil.rmtree(web)

    def test_answer_over_the_limit_is_502(self):
        gw = self.gateway(routes_doc([addr(self.b1)], [addr(self.catalog)]),
                          flags={"gateway.max_response_bytes": "1024"})
        direct = self.b1.request("GET", "/v1/shows/5/seats")
        self.assertGreater(len(direct[2]), 1024)
        status, _, body = gw.json("GET", "/v1/shows/5/seats")
        self.assertEqual(status, 502, body)
        self.assertEqual(body["type"], "/problems/bad-gateway")
        # The service is not to blame: its breaker saw no failure.
        pool = gw.pools()["booking"]
        self.assertEqual(pool["instances"][0]["failures_total"], 0)

    def test_forwarded_headers_and_hop_by_hop(self):
        echo = EchoServer((HOST, 0), EchoHandler)
        thread = threading.Thread(target=echo.serve_forever, daemon=True)
        thread.start()
        try:
            echo_addr = f"{HOST}:{echo.server_address[1]}"
            gw = self.gateway(routes_doc(
                [addr(self.b1)], [addr(self.catalog)],
                extra_pools={"echo": {"instances": [echo_addr]}},
                extra_routes=[{"prefix": "/v1/echo/", "pool": "echo"}]))
            status, got, seen = gw.json("GET", "/v1/echo/x?q=1", headers={
                "Connection": "X-Secret",
                "X-Secret": "dropped",
                "Proxy-Connection": "keep-alive",
                "TE": "trailers",
                "X-Forwarded-For": "10.0.0.1",
                "X-Deadline-Ms": "5000",
                "X-Request-Id": "gw-hop-1",
                "X-Custom": "kept"})
            plain = gw.json("GET", "/v1/echo/y")
            # More header fields than the gateway takes: 431, not sent on.
            many = {f"X-Many-{i}": "v" for i in range(70)}
            status_many, _, body_many = gw.json("GET", "/v1/echo/z",
                                                headers=many)
        finally:
            echo.shutdown()
            echo.server_close()
        self.assertEqual((status_many, body_many["type"]),
                         (431, "/problems/headers-too-large"))
        self.assertEqual(status, 200, seen)
        for name in ("x-secret", "proxy-connection", "te"):
            self.assertNotIn(name, seen)
        self.assertEqual(seen["x-custom"], "kept")
        self.assertEqual(seen["x-request-id"], "gw-hop-1")
        self.assertEqual(seen["x-forwarded-for"], "10.0.0.1, 127.0.0.1")
        # The client's 5 s, shorter than the route's 10 s, less time spent.
        self.assertGreater(int(seen["x-deadline-ms"]), 3000)
        self.assertLessEqual(int(seen["x-deadline-ms"]), 5000)
        self.assertNotIn("x-hop", got)
        self.assertNotIn("keep-alive", got)
        self.assertEqual(got["x-kept"], "yes")
        self.assertEqual(got["x-upstream"], echo_addr)
        # Without one, the route's budget.
        self.assertEqual(plain[0], 200)
        self.assertGreater(int(plain[2]["x-deadline-ms"]), 8000)
        self.assertLessEqual(int(plain[2]["x-deadline-ms"]), 10000)

    def test_bad_routes_file_stops_the_start(self):
        bad = routes_doc([addr(self.b1)], [addr(self.catalog)])
        bad["routes"][1]["pool"] = "bookin"
        fd, path = tempfile.mkstemp(prefix="gw-routes-", suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump(bad, f)
        try:
            proc = subprocess.run(
                [marquee_bin(), "gateway", f"--http.port={free_port()}",
                 f"--gateway.routes={path}"],
                capture_output=True, text=True, timeout=20)
        finally:
            os.unlink(path)
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("routes[1].pool: unknown pool 'bookin'", proc.stderr)
        for line in proc.stderr.splitlines():
            self.assertRegex(line, LINE_RE)

    # ------------------------------------------------------------ admin

    def test_admin_auth_and_validation(self):
        gw = self.gateway(routes_doc([addr(self.b1)], [addr(self.catalog)]))
        schema = ApiSchema.for_file("gateway.yaml")
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            status, got, body = gw.request("GET", "/admin/pools",
                                           headers=headers)
            self.assertEqual(status, 401)
            self.assertIn("bearer", got["www-authenticate"].lower())
            schema.check("GET", "/admin/pools", status, got, body)
            status, got, body = gw.request(
                "PUT", "/admin/pools/booking", {"instances": []},
                headers=headers)
            self.assertEqual(status, 401)

        status, got, body = gw.request("GET", "/admin/pools", headers=AUTH)
        pools = schema.check("GET", "/admin/pools", status, got, body)
        self.assertEqual(status, 200)
        self.assertEqual({p["name"] for p in pools["pools"]},
                         {"booking", "catalog"})
        booking = [p for p in pools["pools"] if p["name"] == "booking"][0]
        self.assertEqual(booking["balance"], "hash")
        self.assertEqual(booking["breaker"]["state"], "closed")
        self.assertEqual([i["address"] for i in booking["instances"]],
                         [addr(self.b1)])
        self.assertEqual(booking["instances"][0]["health"], "up")

        for bad in ({"instances": "127.0.0.1:1"},
                    {"instances": ["localhost:80"]},
                    {"instances": ["127.0.0.1:1", "127.0.0.1:1"]},
                    {"instances": []} | {"weight": 2},
                    {}):
            status, got, body = gw.request("PUT", "/admin/pools/booking",
                                           bad, headers=AUTH)
            self.assertEqual(status, 422, bad)
            doc = schema.check("PUT", "/admin/pools/{name}", status, got,
                               body)
            self.assertEqual(doc["type"], "/problems/validation-failed")
            self.assertTrue(doc["errors"])
        status, _, _ = gw.request("PUT", "/admin/pools/nope",
                                  {"instances": []}, headers=AUTH)
        self.assertEqual(status, 404)
        # Nothing changed.
        self.assertEqual(len(gw.pools()["booking"]["instances"]), 1)

    # ------------------------------------------------------------ health

    def test_killed_instance_loses_no_get(self):
        gw = self.gateway(routes_doc([addr(self.b2), addr(self.b3)],
                                     [addr(self.catalog)]))
        statuses, stop = [], threading.Event()

        def client():
            n = 0
            while not stop.is_set():
                n += 1
                statuses.append(gw.request(
                    "GET", f"/v1/shows/{n % 12 + 1}/seats")[0])

        t = threading.Thread(target=client)
        t.start()
        try:
            wait_for("traffic", lambda: len(statuses) > 20)
            self.b3.kill()
            killed_at = time.monotonic()
            # Down within fall (3) fast checks of 100 ms, plus slack.
            wait_for("b3 down", lambda: gw.instance("booking", self.b3)
                     ["health"] == "down", timeout=5)
            down_after = time.monotonic() - killed_at
            count = len(statuses)
            wait_for("traffic after", lambda: len(statuses) > count + 20)
        finally:
            stop.set()
            t.join()
            self.b3.start()
        self.assertLess(down_after, 2.0)
        self.assertEqual(set(statuses), {200},
                         f"{len(statuses)} answers: "
                         f"{sorted(set(statuses))}")

    def test_failing_instance_is_ejected_then_readmitted(self):
        gw = self.gateway(
            routes_doc([addr(self.b1), addr(self.b2)], [addr(self.catalog)],
                       hashed=False),
            flags={"gateway.health.fall": "50"})
        self.set_fault(self.b2, 500)
        wait_for("b2 ejected", lambda: (
            gw.request("GET", "/v1/shows/3/seats")
            and gw.instance("booking", self.b2)["ejected"]))
        # While ejected every answer comes from b1.
        for show in range(1, 11):
            self.assertEqual(gw.served_by(f"/v1/shows/{show}/seats"),
                             (200, addr(self.b1)))
        self.set_fault(self.b2, 0)
        wait_for("b2 readmitted",
                 lambda: not gw.instance("booking", self.b2)["ejected"],
                 timeout=5)
        wait_for("traffic on b2", lambda: gw.served_by(
            "/v1/shows/3/seats") == (200, addr(self.b2)), timeout=5)
        self.assertIn("instance_ejected pool=booking instance="
                      f"{addr(self.b2)}", gw.log())
        # Logged from the next tick of the health checks.
        wait_for("readmission logged", lambda: (
            "instance_readmitted pool=booking instance="
            f"{addr(self.b2)}") in gw.log(), timeout=2)

    def test_hung_instance_opens_then_closes_breaker(self):
        gw = self.gateway(
            routes_doc([addr(self.b1)], [addr(self.catalog)],
                       seat_timeouts={"connect_timeout_ms": 200,
                                      "first_byte_timeout_ms": 250,
                                      "total_timeout_ms": 600}),
            flags={"gateway.health.fall": "50",
                   "gateway.breaker.window": "10",
                   "gateway.breaker.min_calls": "4",
                   "gateway.breaker.probes": "2"})
        self.assertEqual(gw.request("GET", "/v1/shows/1/seats")[0], 200)
        self.b1.proc.send_signal(signal.SIGSTOP)
        try:
            status, got, body = gw.json("GET", "/v1/shows/1/seats")
            self.assertEqual(status, 504, body)
            self.assertEqual(body["type"], "/problems/upstream-timeout")
            wait_for("breaker open", lambda: gw.request(
                "GET", "/v1/shows/1/seats")[0] == 503, timeout=5)
            self.assertEqual(gw.pools()["booking"]["breaker"]["state"],
                             "open")
            started = time.monotonic()
            status, got, body = gw.json("GET", "/v1/shows/1/seats")
            fast = time.monotonic() - started
            self.assertEqual(status, 503, body)
            self.assertEqual(body["type"], "/problems/upstream-unavailable")
            self.assertGreaterEqual(int(got["retry-after"]), 1)
            # Well under the route's 600 ms budget: nothing was sent.
            self.assertLess(fast, 0.4)
        finally:
            self.b1.proc.send_signal(signal.SIGCONT)
        wait_for("answers again", lambda: gw.request(
            "GET", "/v1/shows/1/seats")[0] == 200, timeout=10)
        wait_for("breaker closed", lambda: gw.request(
            "GET", "/v1/shows/1/seats")[0] == 200 and
            gw.pools()["booking"]["breaker"]["state"] == "closed",
            timeout=10)
        self.assertIn("breaker_opened pool=booking", gw.log())
        self.assertIn("breaker_closed pool=booking", gw.log())
        status, _, text = gw.request("GET", "/metrics")
        self.assertIn('marquee_gateway_breaker_opens_total{pool="booking"}',
                      text.decode())

    # ------------------------------------------------------------ balance

    def test_consistent_hashing(self):
        three = [addr(self.b1), addr(self.b2), addr(self.b3)]
        gw = self.gateway(routes_doc(three, [addr(self.catalog)]))
        shows = range(1, 41)
        owner = {}
        for show in shows:
            status, by = gw.served_by(f"/v1/shows/{show}/seats")
            self.assertIn(by, three)
            owner[show] = by
        self.assertEqual(set(owner.values()), set(three))
        # The same show, the same instance, every time.
        for show in shows:
            self.assertEqual(gw.served_by(f"/v1/shows/{show}/seats")[1],
                             owner[show])
        # A hold of a show goes where its show does.
        hold_path = "/v1/holds/7-00ab"
        self.assertEqual(gw.served_by(hold_path)[1], owner[7])

        status, _, body = gw.json("PUT", "/admin/pools/booking",
                                  {"instances": three[:2]}, headers=AUTH)
        self.assertEqual(status, 200, body)
        moved = 0
        for show in shows:
            by = gw.served_by(f"/v1/shows/{show}/seats")[1]
            if owner[show] == three[2]:
                self.assertIn(by, three[:2])
                moved += 1
            else:
                self.assertEqual(by, owner[show], show)
        self.assertGreater(moved, 0)

    # ------------------------------------------------------------ retries

    def test_post_retried_only_with_idempotency_key(self):
        gw = self.gateway(routes_doc([addr(self.b1)], [addr(self.catalog)]),
                          flags={"gateway.health.fall": "50",
                                 "gateway.outlier.consecutive": "50"})
        self.set_fault(self.b1, 503)
        body = {"seats": ["A1"]}
        rid = "gw-post-" + uuid.uuid4().hex[:8]
        status, _, _ = gw.request("POST", "/v1/shows/1/holds", body,
                                  headers={"X-Request-Id": rid,
                                           "X-Customer-Id": "c-gw"})
        self.assertEqual(status, 503)
        self.assertEqual(self.settled_count(self.b1, "POST", rid), 1)

        rid = "gw-post-" + uuid.uuid4().hex[:8]
        status, _, _ = gw.request("POST", "/v1/shows/1/holds", body,
                                  headers={"X-Request-Id": rid,
                                           "X-Customer-Id": "c-gw",
                                           "Idempotency-Key": rid})
        self.assertEqual(status, 503)
        self.assertEqual(self.settled_count(self.b1, "POST", rid), 3)

    def test_get_retried_on_another_instance(self):
        gw = self.gateway(
            routes_doc([addr(self.b1), addr(self.b2)], [addr(self.catalog)],
                       hashed=False),
            flags={"gateway.health.fall": "50",
                   "gateway.outlier.consecutive": "50"})
        self.set_fault(self.b1, 503)
        for show in range(1, 21):
            self.assertEqual(gw.served_by(f"/v1/shows/{show}/seats"),
                             (200, addr(self.b2)))
        _, _, text = gw.request("GET", "/metrics")
        retries = [line for line in text.decode().splitlines()
                   if line.startswith("marquee_gateway_retries_total"
                                      '{pool="booking"}')]
        self.assertTrue(retries and float(retries[0].split()[-1]) > 0,
                        retries)

    # ------------------------------------------------------------ registry

    def test_registry_file_changes_pools(self):
        fd, registry = tempfile.mkstemp(prefix="gw-registry-",
                                        suffix=".json")
        os.close(fd)
        os.unlink(registry)

        def write(doc):
            tmp = registry + ".tmp"
            with open(tmp, "w") as f:
                f.write(doc if isinstance(doc, str) else json.dumps(doc))
            os.replace(tmp, registry)

        try:
            gw = self.gateway(
                routes_doc([addr(self.b1)], [addr(self.catalog)],
                           hashed=False),
                flags={"gateway.registry": registry})
            write({"pools": {"booking": [addr(self.b1), addr(self.b2)]}})
            wait_for("b2 joins", lambda: (gw.instance("booking", self.b2)
                                          or {}).get("health") == "up")
            wait_for("traffic on b2", lambda: gw.served_by(
                "/v1/shows/2/seats") == (200, addr(self.b2)))

            # A bad file is ignored: the pool stays as it was.
            write("{\"pools\": {\"booking\": [\"nowhere\"]}}")
            wait_for("bad file noticed",
                     lambda: "registry_ignored" in gw.log(), timeout=5)
            self.assertEqual(len(gw.pools()["booking"]["instances"]), 2)

            write({"pools": {"booking": [addr(self.b2)]}})
            wait_for("b1 leaves", lambda: gw.instance("booking", self.b1)
                     is None)
            for show in range(1, 11):
                self.assertEqual(gw.served_by(f"/v1/shows/{show}/seats"),
                                 (200, addr(self.b2)))
        finally:
            for path in (registry, registry + ".tmp"):
                if os.path.exists(path):
                    os.unlink(path)


if __name__ == "__main__":
    unittest.main()
