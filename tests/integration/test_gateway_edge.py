"""The gateway's edge: the response cache, rate limits and load shedding,
and who a request comes from, against real catalog and booking processes.

One catalog with the demo data and one booking instance run for the whole
module, both with the fault switch on (--http.faults), so that a test can
make them slow.  Each test starts its own gateway with a routes file of
its own.  Upstream requests are counted from the services' own
marquee_http_requests_total.

The freshness rules for answers the services never give (no-store,
private, answers to requests with Authorization) are tested against a
small origin written here, since no service of the platform sends them.
"""

import http.server
import json
import re
import signal
import socketserver
import threading
import time
import unittest

from support import HOST, Service, free_port, settled
from test_gateway import AUTH, DEMO, TOKEN, Gateway, addr, wait_for

# The catalog takes the gateway's admin token: /v1/admin/ passes the
# gateway only with an admin's credentials, and reaches the catalog with
# the same Authorization.
CATALOG_TOKEN = TOKEN
GATEWAY_SECRET = "edge-test-gateway-secret"

# Health checks far apart: the tests slow the upstreams on purpose, and a
# slow /readyz must not take an instance out in the middle.
EDGE_FLAGS = {
    "gateway.health.interval_ms": "60000",
    "gateway.health.fast_interval_ms": "60000",
    "gateway.health.timeout_ms": "5000",
    "http.gateway_secret": GATEWAY_SECRET,
}


def metric(svc, name, **labels):
    """The sum of a metric's samples whose labels include these."""
    _, _, text = svc.request("GET", "/metrics")
    total = 0.0
    for line in text.decode().splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def upstream_count(svc, route):
    """The upstream's count of GETs on route, once settled: it counts a
    request just after answering it, a moment after the gateway can."""
    return settled(lambda: metric(svc, "marquee_http_requests_total",
                                  route=route, method="GET"))


class Origin(socketserver.ThreadingMixIn, http.server.HTTPServer):
    """An origin whose answers carry the Cache-Control a test asks for
    (?cc=...) and that counts the requests it gets, by path."""

    daemon_threads = True

    def __init__(self):
        self.counts = {}
        self.lock = threading.Lock()
        super().__init__((HOST, free_port()), OriginHandler)

    def count(self, path):
        with self.lock:
            return self.counts.get(path, 0)


class OriginHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        path, _, query = self.path.partition("?")
        with self.server.lock:
            self.server.counts[path] = self.server.counts.get(path, 0) + 1
        cc = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
        body = json.dumps({
            "path": path,
            "customer": self.headers.get("X-Customer-Id"),
            "secret": self.headers.get("X-Gateway-Secret"),
            "authorization": self.headers.get("Authorization"),
            "api_key": self.headers.get("X-Api-Key")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", cc.get("cc", "").replace("+", " "))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def seat_routes(catalog, booking, cache=None, extra=None):
    """Seat maps to booking (cached as `cache` says), the rest of /v1/ to
    catalog."""
    seats = {"pattern": "/v1/shows/{show_id}/seats", "pool": "booking",
             "hash_param": "show_id"}
    if cache is not None:
        seats["cache"] = cache
    return {"pools": {"booking": {"instances": [addr(booking)],
                                  "balance": "hash"},
                      "catalog": {"instances": [addr(catalog)]}},
            "routes": (extra or []) + [
                seats,
                {"pattern": "/v1/shows/{show_id}/holds", "pool": "booking",
                 "hash_param": "show_id", "class": "critical"},
                {"prefix": "/v1/", "pool": "catalog", "cache": {}}]}


class GatewayEdgeTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.catalog = Service("catalog", flags={
            "catalog.demo": "true", "catalog.demo_file": DEMO,
            "catalog.admin_token": CATALOG_TOKEN, "http.faults": "true"})
        try:
            cls.booking = Service("booking", flags={
                "booking.catalog_url": cls.catalog.url,
                "http.faults": "true"})
        except BaseException:
            cls.catalog.stop()
            cls.catalog.close()
            raise

    @classmethod
    def tearDownClass(cls):
        for svc in (cls.booking, cls.catalog):
            try:
                svc.stop()
            finally:
                svc.close()

    def setUp(self):
        self.gw = None

    def tearDown(self):
        for svc in (self.catalog, self.booking):
            if svc.proc is None:
                svc.start()
            self.set_fault(svc, 0)
        if self.gw is not None:
            try:
                self.gw.stop()
            finally:
                self.gw.close()

    def gateway(self, routes, flags=None):
        merged = dict(EDGE_FLAGS)
        merged.update(flags or {})
        self.gw = Gateway(routes, merged)
        return self.gw

    def customer(self, gw, name):
        """Signs a new customer up and in; the Authorization header of its
        access token, and its customer id."""
        account = {"email": f"{name}@example.com", "password": "a long pass",
                   "name": name}
        s, _, body = gw.json("POST", "/v1/accounts", account)
        self.assertEqual(s, 201, body)
        s, _, body = gw.json("POST", "/v1/sessions",
                             {"email": account["email"],
                              "password": account["password"]})
        self.assertEqual(s, 201, body)
        return ({"Authorization": f"Bearer {body['access_token']}"},
                body["customer_id"])

    def set_fault(self, svc, status, delay_ms=0):
        code, _, body = svc.json("PUT", "/internal/v1/faults",
                                 {"status": status, "delay_ms": delay_ms})
        self.assertEqual(code, 200, body)

    # ------------------------------------------------------------ cache

    def test_hit_age_and_304(self):
        gw = self.gateway(seat_routes(self.catalog, self.booking))
        route = "/v1/shows/{show_id}"
        before = upstream_count(self.catalog, route)
        s1, h1, b1 = gw.request("GET", "/v1/shows/2")
        self.assertEqual(s1, 200)
        self.assertEqual(h1["cache-status"], "marquee; fwd=miss; stored")
        time.sleep(1.1)
        s2, h2, b2 = gw.request("GET", "/v1/shows/2")
        self.assertEqual((s2, b2), (200, b1))
        self.assertEqual(h2["cache-status"], "marquee; hit")
        self.assertGreaterEqual(int(h2["age"]), 1)
        self.assertEqual(h2["etag"], h1["etag"])
        # The client's own If-None-Match gets 304 from the cache.
        s3, h3, b3 = gw.request("GET", "/v1/shows/2",
                                headers={"If-None-Match": h1["etag"]})
        self.assertEqual((s3, b3), (304, b""))
        self.assertEqual(h3["etag"], h1["etag"])
        # HEAD is answered from GET's entry.
        s4, h4, b4 = gw.request("HEAD", "/v1/shows/2")
        self.assertEqual((s4, b4), (200, b""))
        self.assertEqual(h4["cache-status"], "marquee; hit")
        self.assertEqual(upstream_count(self.catalog, route), before + 1)
        self.assertEqual(metric(gw, "marquee_gateway_cache_requests_total",
                                result="hit"), 3)

    def test_concurrent_misses_make_one_request(self):
        gw = self.gateway(seat_routes(self.catalog, self.booking))
        route = "/v1/movies/{movie_id}"
        before = upstream_count(self.catalog, route)
        # Slow enough that every client asks while the first is out.
        self.set_fault(self.catalog, 0, delay_ms=700)
        results = []
        lock = threading.Lock()

        def get():
            got = gw.request("GET", "/v1/movies/1")
            with lock:
                results.append(got)

        threads = [threading.Thread(target=get) for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.set_fault(self.catalog, 0)
        self.assertEqual(len(results), 20)
        self.assertEqual({r[0] for r in results}, {200})
        self.assertEqual(len({r[2] for r in results}), 1)
        self.assertEqual(upstream_count(self.catalog, route), before + 1)
        coalesced = metric(gw, "marquee_gateway_cache_requests_total",
                           result="coalesced")
        statuses = [r[1]["cache-status"] for r in results]
        self.assertEqual(statuses.count("marquee; fwd=miss; stored"), 1)
        self.assertEqual(coalesced, statuses.count(
            "marquee; hit; detail=coalesced"))
        self.assertGreater(coalesced, 0)

    def test_seat_maps_are_revalidated_every_time(self):
        # Booking marks seat maps no-cache with an ETag: kept, but every
        # use asks booking first (If-None-Match), and booking's 304 costs
        # it no body.
        gw = self.gateway(seat_routes(self.catalog, self.booking,
                                      cache={"ttl_ms": 60000}))
        route = "/v1/shows/{show_id}/seats"
        before = upstream_count(self.booking, route)
        s, h1, body = gw.request("GET", "/v1/shows/3/seats")
        self.assertEqual((s, h1["cache-status"]),
                         (200, "marquee; fwd=miss; stored"))
        s, h, got = gw.request("GET", "/v1/shows/3/seats")
        self.assertEqual((s, got), (200, body))
        self.assertEqual(h["cache-status"],
                         "marquee; fwd=stale; fwd-status=304")
        s, h, got = gw.request("GET", "/v1/shows/3/seats",
                               headers={"If-None-Match": h1["etag"]})
        self.assertEqual((s, got), (304, b""))
        self.assertEqual(upstream_count(self.booking, route), before + 3)
        self.assertEqual(metric(gw, "marquee_gateway_cache_requests_total",
                                result="revalidated"), 2)
        # No stale seat map, even with the upstream gone.
        self.booking.kill()
        s, _, _ = gw.request("GET", "/v1/shows/3/seats")
        self.assertIn(s, (502, 503))

    def test_stale_while_revalidate_and_stale_if_error(self):
        # Catalog says max-age=10; the route keeps shows fresh 300 ms and
        # sets its own stale windows.
        gw = self.gateway(seat_routes(
            self.catalog, self.booking,
            extra=[{"pattern": "/v1/shows/{show_id}", "pool": "catalog",
                    "cache": {"max_ttl_ms": 300,
                              "stale_while_revalidate_ms": 1500,
                              "stale_if_error_ms": 60000}}]))
        route = "/v1/shows/{show_id}"
        before = upstream_count(self.catalog, route)
        s, h, body = gw.request("GET", "/v1/shows/3")
        self.assertEqual((s, h["cache-status"]),
                         (200, "marquee; fwd=miss; stored"))
        time.sleep(0.4)
        # Stale: served at once, refreshed once in the background.
        s, h, _ = gw.request("GET", "/v1/shows/3")
        self.assertEqual((s, h["cache-status"]),
                         (200, "marquee; hit; detail=stale"))
        wait_for("the background refresh",
                 lambda: upstream_count(self.catalog, route) == before + 2)
        self.assertEqual(metric(gw, "marquee_gateway_cache_requests_total",
                                result="stale"), 1)
        s, h, _ = gw.request("GET", "/v1/shows/3")
        self.assertIn(h["cache-status"],
                      ("marquee; hit", "marquee; hit; detail=stale"))

        # The upstream dies: past every freshness, the stale show is
        # served.
        self.catalog.kill()
        time.sleep(1.9)
        s, h, got = gw.request("GET", "/v1/shows/3")
        self.assertEqual(s, 200)
        self.assertEqual(h["cache-status"],
                         "marquee; hit; detail=stale-if-error")
        self.assertGreaterEqual(int(h["age"]), 1)
        self.assertEqual(got, body)
        # A key never cached has nothing to fall back on.
        s, _, _ = gw.request("GET", "/v1/shows/4")
        self.assertIn(s, (502, 503))

    def test_cancelled_show_is_purged_at_once(self):
        cancel = {"pattern": "/v1/admin/shows/{show_id}/cancel",
                  "pool": "catalog", "class": "critical",
                  "purge": ["/v1/shows/{show_id}"]}
        gw = self.gateway(seat_routes(self.catalog, self.booking,
                                      cache={"ttl_ms": 60000},
                                      extra=[cancel]))
        show = 6
        s, _, before = gw.json("GET", f"/v1/shows/{show}")
        self.assertEqual(s, 200)
        self.assertNotEqual(before["status"], "cancelled")
        self.assertEqual(gw.request("GET", f"/v1/shows/{show}/seats")[0], 200)
        s, h, _ = gw.request("GET", f"/v1/shows/{show}")
        self.assertEqual(h["cache-status"], "marquee; hit")

        s, _, body = gw.json(
            "POST", f"/v1/admin/shows/{show}/cancel", {},
            headers={"Authorization": f"Bearer {CATALOG_TOKEN}"})
        self.assertIn(s, (200, 202), body)
        s, h, after = gw.json("GET", f"/v1/shows/{show}")
        self.assertEqual(s, 200)
        self.assertEqual(h["cache-status"], "marquee; fwd=miss; stored")
        self.assertEqual(after["status"], "cancelled")
        _, h, _ = gw.request("GET", f"/v1/shows/{show}/seats")
        self.assertNotEqual(h["cache-status"], "marquee; hit")
        self.assertGreaterEqual(
            metric(gw, "marquee_gateway_cache_purged_total"), 2)

        # The admin endpoint does the same by hand.
        gw.request("GET", "/v1/shows/7")
        s, _, out = gw.json("DELETE", "/admin/cache?prefix=/v1/shows/7",
                            headers=AUTH)
        self.assertEqual((s, out["removed"]), (200, 1))
        _, h, _ = gw.request("GET", "/v1/shows/7")
        self.assertEqual(h["cache-status"], "marquee; fwd=miss; stored")
        s, _, problem = gw.json("DELETE", "/admin/cache", headers=AUTH)
        self.assertEqual(s, 400)
        self.assertEqual(problem["type"], "/problems/invalid-query")
        s, _, _ = gw.json("DELETE", "/admin/cache?prefix=/")
        self.assertEqual(s, 401)

    def test_no_store_private_and_authorization(self):
        origin = Origin()
        threading.Thread(target=origin.serve_forever, daemon=True).start()
        try:
            gw = self.gateway({
                "pools": {"o": {"instances": [f"{HOST}:{origin.server_port}"]}},
                "routes": [{"prefix": "/", "pool": "o", "cache": {}}]})
            cases = (("/no-store", "no-store,+max-age=60", {}, 2),
                     ("/private", "private,+max-age=60", {}, 2),
                     ("/shared", "max-age=60", {}, 1),
                     ("/auth", "max-age=60", AUTH, 2),
                     ("/auth-public", "public,+max-age=60", {}, 1))
            for path, cc, headers, want in cases:
                for _ in range(2):
                    s, _, _ = gw.request("GET", f"{path}?cc={cc}",
                                         headers=headers)
                    self.assertEqual(s, 200)
                self.assertEqual(origin.count(path), want, path)
            # A public answer, stored, may serve a request with
            # credentials; one that is not public may not.
            gw.request("GET", "/auth-public?cc=public,+max-age=60",
                       headers=AUTH)
            self.assertEqual(origin.count("/auth-public"), 1)
            gw.request("GET", "/shared?cc=max-age=60", headers=AUTH)
            self.assertEqual(origin.count("/shared"), 2)
        finally:
            origin.shutdown()
            origin.server_close()

    # ------------------------------------------------------------ rate limits

    def test_rate_limit_figures_and_headers(self):
        limit = {"policy": "browse", "key": "customer", "rate": 6,
                 "per": "minute", "burst": 3}
        dry = dict(limit, policy="shadow", dry_run=True)
        gw = self.gateway(seat_routes(self.catalog, self.booking, extra=[
            {"pattern": "/v1/cities", "pool": "catalog", "rate_limit": limit},
            {"pattern": "/v1/cities/{city_id}", "pool": "catalog",
             "rate_limit": dry}]))
        alice, _ = self.customer(gw, "alice")
        bob, _ = self.customer(gw, "bob")
        for remaining in (2, 1, 0):
            s, h, _ = gw.request("GET", "/v1/cities", headers=alice)
            self.assertEqual(s, 200)
            self.assertEqual(h["ratelimit-policy"], '"browse";q=3;w=30')
            m = re.fullmatch(r'"browse";r=(\d+);t=(\d+)', h["ratelimit"])
            self.assertEqual(int(m.group(1)), remaining)
        s, h, body = gw.json("GET", "/v1/cities", headers=alice)
        self.assertEqual(s, 429)
        self.assertEqual(body["type"], "/problems/rate-limited")
        # One request every 10 s: the next is due in 10 s, less the few
        # milliseconds this test took.
        self.assertIn(int(h["retry-after"]), (9, 10))
        self.assertRegex(h["ratelimit"], r'^"browse";r=0;t=(29|30)$')
        # Another customer has a burst of its own.
        self.assertEqual(gw.request("GET", "/v1/cities", headers=bob)[0], 200)
        self.assertEqual(metric(gw, "marquee_gateway_rate_limited_total",
                                policy="browse", mode="enforced"), 1)

        # Dry run: counted, let through.
        for _ in range(5):
            s, h, _ = gw.request("GET", "/v1/cities/1", headers=alice)
            self.assertEqual(s, 200)
        self.assertEqual(metric(gw, "marquee_gateway_rate_limited_total",
                                policy="shadow", mode="dry_run"), 2)

    # ------------------------------------------------------------ callers

    def test_callers_identity_reaches_the_upstream(self):
        origin = Origin()
        threading.Thread(target=origin.serve_forever, daemon=True).start()
        try:
            gw = self.gateway({
                "pools": {"o": {"instances": [f"{HOST}:{origin.server_port}"]}},
                "routes": [{"prefix": "/v1/", "pool": "o"}]})
            carol, carol_id = self.customer(gw, "carol")
            # A customer is named by the gateway, with its secret.
            s, _, body = gw.json("GET", "/v1/me", headers=carol)
            self.assertEqual(s, 200)
            self.assertEqual(body["customer"], carol_id)
            self.assertEqual(body["secret"], GATEWAY_SECRET)
            # The caller's own credentials stay at the gateway.
            self.assertIsNone(body["authorization"])
            self.assertIsNone(body["api_key"])
            # A client that names itself is not believed.
            s, _, body = gw.json("GET", "/v1/me",
                                 headers={"X-Customer-Id": "mallory",
                                          "X-Gateway-Secret": "guess"})
            self.assertEqual(s, 200)
            self.assertIsNone(body["customer"])
            self.assertEqual(body["secret"], GATEWAY_SECRET)
            # An altered token is refused at the door.
            forged = carol["Authorization"][:-2] + "xx"
            s, h, body = gw.json("GET", "/v1/me",
                                 headers={"Authorization": forged})
            self.assertEqual(s, 401)
            self.assertEqual(origin.count("/v1/me"), 2)
            # /v1/admin/ is for administrators.
            s, _, _ = gw.json("POST", "/v1/admin/shows", {})
            self.assertEqual(s, 401)
            s, _, body = gw.json("POST", "/v1/admin/shows", {}, headers=carol)
            self.assertEqual(s, 403)
            self.assertEqual(origin.count("/v1/admin/shows"), 0)
            # An admin signed in with an access token is vouched for
            # upstream with the admin token the services share, not with
            # the access token they cannot check.
            admin = {"email": "root@example.com", "password": "a long pass",
                     "name": "root", "role": "admin"}
            s, _, body = gw.json("POST", "/v1/accounts", admin, headers=AUTH)
            self.assertEqual(s, 201, body)
            s, _, body = gw.json("POST", "/v1/sessions",
                                 {"email": admin["email"],
                                  "password": admin["password"]})
            self.assertEqual(s, 201, body)
            self.assertEqual(body["role"], "admin")
            root = {"Authorization": f"Bearer {body['access_token']}"}
            s, _, body = gw.json("GET", "/v1/admin/report", headers=root)
            self.assertEqual(s, 200, body)
            self.assertEqual(body["authorization"], AUTH["Authorization"])
        finally:
            origin.shutdown()
            origin.server_close()

    def test_hot_show_holds_need_a_pass(self):
        gw = self.gateway(seat_routes(self.catalog, self.booking))
        dave, _ = self.customer(gw, "dave")
        opened = time.strftime("%Y-%m-%dT%H:%M:%SZ",
                               time.gmtime(time.time() - 60))
        hot = {"show_id": 8, "opens_at": opened, "rate_per_s": 100}
        s, _, body = gw.json("POST", "/admin/hot-sales", hot, headers=AUTH)
        self.assertIn(s, (200, 201), body)
        hold = {"seats": ["A1"]}
        s, _, body = gw.json("POST", "/v1/shows/8/holds", hold,
                             headers=dict(dave, **{"Idempotency-Key": "p1"}))
        self.assertEqual(s, 403)
        self.assertEqual(body["type"], "/problems/pass-required")
        # Another show is not hot: its hold reaches booking.
        s, _, body = gw.json("POST", "/v1/shows/9/holds", hold,
                             headers=dict(dave, **{"Idempotency-Key": "p2"}))
        self.assertNotEqual(s, 403, body)

    # ------------------------------------------------------------ shedding

    def test_shedding_order_under_overload(self):
        gw = self.gateway(seat_routes(self.catalog, self.booking),
                          {"gateway.max_in_flight": "10"})
        # Slow, but under the routes' 5 s first-byte timeout; the steps
        # below must all happen while the first requests are still out.
        self.set_fault(self.catalog, 0, delay_ms=4500)
        self.set_fault(self.booking, 0, delay_ms=4500)
        threads, results = [], []

        def send(path, headers=None, method="GET", body=None):
            def run():
                results.append(gw.request(method, path, body=body,
                                          headers=headers))
            t = threading.Thread(target=run)
            t.start()
            threads.append(t)

        def in_flight(n):
            wait_for(f"{n} in flight", lambda: metric(
                gw, "marquee_gateway_in_flight") == n)

        # Uncached reads (distinct queries) fill 7 of 10: anonymous reads
        # stop there.
        for k in range(7):
            send(f"/v1/cities?limit={k + 1}")
        in_flight(7)
        s, h, body = gw.json("GET", "/v1/cities?limit=20")
        self.assertEqual((s, h["retry-after"]), (503, "1"))
        self.assertEqual(body["type"], "/problems/unavailable")
        # Signed-in reads go on to 9.
        signed = AUTH
        send("/v1/cities?limit=21", signed)
        send("/v1/cities?limit=22", signed)
        in_flight(9)
        self.assertEqual(gw.request("GET", "/v1/cities?limit=23",
                                    headers=signed)[0], 503)
        # Holds go on to 10, and only then are they refused.
        hold = {"seats": ["A1"]}
        send("/v1/shows/1/holds", {"Idempotency-Key": "k-edge-1"}, "POST",
             hold)
        in_flight(10)
        s, _, _ = gw.request("POST", "/v1/shows/1/holds", body=hold,
                             headers={"Idempotency-Key": "k-edge-2"})
        self.assertEqual(s, 503)
        for cls in ("anonymous", "signed", "critical"):
            self.assertEqual(metric(gw, "marquee_gateway_shed_total",
                                    **{"class": cls}), 1, cls)
        for t in threads:
            t.join()
        self.assertEqual(len(results), 10)
        self.assertNotIn(503, [r[0] for r in results])
        in_flight(0)


if __name__ == "__main__":
    unittest.main()
