"""Metrics: what catalog and booking expose on GET /metrics, that the
numbers follow what the services do, that the auditor's oversell counter
sees a seat held twice, and that a real Prometheus (Debian's package)
scrapes every role (gateway, catalog, booking, payment) and answers
queries over what it scraped.
"""

import json
import os
import re
import shutil
import sqlite3
import subprocess
import tempfile
import time
import unittest
import urllib.parse
import urllib.request
import uuid

from support import HOST, ApiSchema, Service, free_port, repo_path, settled

DEMO = repo_path("data", "demo", "catalog.json")
TOKEN = "metrics-test-token"
PROMETHEUS = "/usr/bin/prometheus"

SAMPLE = re.compile(
    r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_exposition(text):
    """{(name, frozenset of (label, value)): value}, checking every line
    is a comment, a sample, or empty, and every sample's family was typed
    before it."""
    samples, typed = {}, set()
    for line in text.splitlines():
        if not line:
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            assert kind in ("counter", "gauge", "histogram"), line
            typed.add(name)
            continue
        if line.startswith("# HELP "):
            continue
        m = SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        name = m.group(1)
        family = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in typed or family in typed, f"untyped: {line!r}"
        labels = frozenset(LABEL.findall(m.group(3) or ""))
        samples[(name, labels)] = float(m.group(4))
    return samples


def scrape(svc):
    status, headers, body = svc.request("GET", "/metrics")
    assert status == 200, status
    assert headers["content-type"].startswith("text/plain; version=0.0.4"), \
        headers
    return parse_exposition(body.decode())


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())))


def hold(svc, show, seats, cust=None):
    return svc.json("POST", f"/v1/shows/{show}/holds", {"seats": seats},
                    {"X-Customer-Id": cust or "c-" + uuid.uuid4().hex[:10]})


def seat_ids(seatmap, row=0, count=None):
    r = seatmap["rows"][row]
    ids = [f"{r['label']}{n}" for n in r["seats"] if n is not None]
    return ids[:count] if count else ids


def wait_for(predicate, timeout=10.0, step=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = predicate()
        if got:
            return got
        time.sleep(step)
    return predicate()


class ServiceMetricsTest(unittest.TestCase):
    """One catalog and one booking, metrics read between actions."""

    @classmethod
    def setUpClass(cls):
        cls.catalog = Service("catalog", flags={
            "catalog.demo": "true", "catalog.demo_file": DEMO,
            "catalog.admin_token": TOKEN})
        cls.booking = Service("booking", flags={
            "booking.catalog_url": cls.catalog.url,
            "booking.sweep_ms": "50",
            "booking.audit_interval_ms": "200"})

    @classmethod
    def tearDownClass(cls):
        codes = [cls.booking.stop(), cls.catalog.stop()]
        cls.booking.close()
        cls.catalog.close()
        assert codes == [0, 0], codes

    def test_every_process_exposes_http_process_and_store_families(self):
        for svc in (self.catalog, self.booking):
            s = scrape(svc)
            names = {name for name, _ in s}
            for want in ("marquee_http_requests_total",
                         "marquee_http_request_duration_seconds_bucket",
                         "marquee_http_requests_in_flight",
                         "marquee_http_connections",
                         "marquee_event_loop_lag_seconds",
                         "process_cpu_seconds_total",
                         "process_resident_memory_bytes",
                         "process_open_fds", "process_max_fds",
                         "process_start_time_seconds",
                         "marquee_store_commits_total",
                         "marquee_store_commit_batch_size_bucket",
                         "marquee_store_commit_duration_seconds_count",
                         "marquee_store_queue_depth"):
                self.assertIn(want, names, f"{svc.role} lacks {want}")
            self.assertGreater(value(s, "process_resident_memory_bytes"),
                               1 << 20)
            # Route labels are patterns, never raw paths with ids.
            routes = {dict(l).get("route") for n, l in s
                      if n == "marquee_http_requests_total"}
            self.assertTrue(all("{" in r or not re.search(r"/\d", r)
                                for r in routes), routes)

    def test_answers_match_the_api_descriptions(self):
        for svc, spec in ((self.catalog, ApiSchema.default()),
                          (self.booking, ApiSchema.for_file("booking.yaml"))):
            status, headers, body = svc.request("GET", "/metrics")
            spec.check("GET", "/metrics", status, headers, body)
            # A 405 is documented with the path's one operation.
            status, headers, body = svc.request("POST", "/metrics")
            self.assertEqual(status, 405)
            spec.check("GET", "/metrics", status, headers, body)

    def test_requests_counted_by_route_and_class(self):
        route = "/v1/shows/{show_id}"
        before = scrape(self.catalog)
        ok0 = value(before, "marquee_http_requests_total", route=route,
                    method="GET", code="2xx")
        bad0 = value(before, "marquee_http_requests_total", route=route,
                     method="GET", code="4xx")
        for _ in range(3):
            self.assertEqual(self.catalog.request("GET", "/v1/shows/1")[0],
                             200)
        self.assertEqual(self.catalog.request("GET", "/v1/shows/999999")[0],
                         404)
        # A request is counted when h2o disposes of it, just after its
        # answer went out, so a scrape may see it a moment late: the counts
        # are read once they have settled.
        def counts():
            s = scrape(self.catalog)
            return (value(s, "marquee_http_requests_total", route=route,
                          method="GET", code="2xx"),
                    value(s, "marquee_http_requests_total", route=route,
                          method="GET", code="4xx"))
        self.assertEqual(settled(counts), (ok0 + 3, bad0 + 1))
        after = scrape(self.catalog)
        count = value(after, "marquee_http_request_duration_seconds_count",
                      route=route, method="GET")
        inf = value(after, "marquee_http_request_duration_seconds_bucket",
                    route=route, method="GET", le="+Inf")
        self.assertEqual(count, inf)
        self.assertGreaterEqual(count, 4)

    def test_booking_counts_holds_conflicts_releases_and_held_seats(self):
        svc = self.booking
        _, _, m = svc.json("GET", "/v1/shows/6/seats")
        seats = seat_ids(m, 2, 2)
        s0 = scrape(svc)
        created0 = value(s0, "marquee_booking_holds_created_total")
        conflicts0 = value(s0, "marquee_booking_hold_conflicts_total")
        released0 = value(s0, "marquee_booking_holds_released_total")
        commits0 = value(s0, "marquee_store_commits_total")

        status, _, h = hold(svc, 6, seats)
        self.assertEqual(status, 201, h)
        self.assertEqual(hold(svc, 6, seats)[0], 409)
        held = wait_for(lambda: value(scrape(svc), "marquee_booking_seats",
                                      state="held") == 2)
        self.assertTrue(held, "the held-seats gauge never showed 2")
        s1 = scrape(svc)
        self.assertEqual(value(s1, "marquee_booking_holds_created_total"),
                         created0 + 1)
        self.assertEqual(value(s1, "marquee_booking_hold_conflicts_total"),
                         conflicts0 + 1)
        self.assertGreater(value(s1, "marquee_store_commits_total"), commits0)

        self.assertEqual(svc.json("DELETE", f"/v1/holds/{h['id']}",
                                  headers={"X-Customer-Id":
                                           h["customer_id"]})[0], 200)
        freed = wait_for(lambda: value(scrape(svc), "marquee_booking_seats",
                                       state="held") == 0)
        self.assertTrue(freed, "the held-seats gauge never went back to 0")
        self.assertEqual(value(scrape(svc),
                               "marquee_booking_holds_released_total"),
                         released0 + 1)

    def test_clean_audits_find_no_oversell(self):
        audits = wait_for(lambda: value(scrape(self.booking),
                                        "marquee_booking_audits_total") >= 2)
        self.assertTrue(audits, "the auditor did not run")
        self.assertEqual(value(scrape(self.booking),
                               "marquee_booking_oversell_total"), 0)


class OversellAuditTest(unittest.TestCase):

    def test_a_seat_in_two_live_holds_is_counted_and_logged(self):
        catalog = Service("catalog", flags={
            "catalog.demo": "true", "catalog.demo_file": DEMO,
            "catalog.admin_token": TOKEN})
        booking = Service("booking", flags={
            "booking.catalog_url": catalog.url,
            "booking.audit_interval_ms": "100"})
        try:
            _, _, m = booking.json("GET", "/v1/shows/7/seats")
            status, _, h = hold(booking, 7, seat_ids(m, 0, 2))
            self.assertEqual(status, 201, h)
            # What no code path of booking can do: a second live hold on
            # one of those seats, written behind its back.
            con = sqlite3.connect(booking.db_path, timeout=10)
            row = con.execute(
                "SELECT show_id, seat_idx, seats, total, currency, "
                "created_at, expires_at, max_expires_at FROM holds "
                "WHERE id = ?", (h["id"],)).fetchone()
            first_seat = json.loads(row[1])[0]
            con.execute(
                "INSERT INTO holds (id, show_id, customer_id, seat_idx, "
                "seats, total, currency, status, created_at, expires_at, "
                "max_expires_at) VALUES (?, ?, 'intruder', ?, ?, ?, ?, "
                "'active', ?, ?, ?)",
                ("7-intruder", row[0], json.dumps([first_seat]), row[2],
                 row[3], row[4], row[5], row[6], row[7]))
            con.commit()
            con.close()
            found = wait_for(lambda: value(
                scrape(booking), "marquee_booking_oversell_total") == 1)
            self.assertTrue(found, "the auditor did not count the seat")
            self.assertIn(f"oversell_found show=7 seat_index={first_seat} "
                          "claims=2", booking.log())
            # Seen again by later audits, counted once.
            audits = value(scrape(booking), "marquee_booking_audits_total")
            wait_for(lambda: value(scrape(booking),
                                   "marquee_booking_audits_total")
                     >= audits + 3)
            self.assertEqual(value(scrape(booking),
                                   "marquee_booking_oversell_total"), 1)
            # A confirmed booking's seat that a live hold also claims is
            # the same fault.
            second_seat = json.loads(row[1])[1]
            con = sqlite3.connect(booking.db_path, timeout=10)
            con.execute(
                "INSERT INTO bookings (id, show_id, customer_id, hold_id, "
                "intent_id, status, total, currency, charge_id, charged, "
                "created_at, updated_at) VALUES ('7-bintruder', 7, "
                "'intruder', '7-gone', '7-gone.0', 'confirmed', 100, 'INR', "
                "'ch_x', 100, 0, 0)")
            con.execute(
                "INSERT INTO booking_seats (booking_id, idx, seat, category, "
                "price, status) VALUES ('7-bintruder', ?, 'X', 'classic', "
                "100, 'confirmed')", (second_seat,))
            con.commit()
            con.close()
            found = wait_for(lambda: value(
                scrape(booking), "marquee_booking_oversell_total") == 2)
            self.assertTrue(found, "the auditor missed a booked seat")
            self.assertIn(f"oversell_found show=7 seat_index={second_seat} "
                          "claims=2", booking.log())
            self.assertEqual([booking.stop(), catalog.stop()], [0, 0])
        finally:
            booking.close()
            catalog.close()


class PrometheusScrapeTest(unittest.TestCase):
    """Debian's Prometheus scrapes every role for real: the gateway in front
    of catalog and booking, and payment."""

    def setUp(self):
        if not os.access(PROMETHEUS, os.X_OK):
            self.fail(f"{PROMETHEUS} is missing: scripts/deps.sh installs "
                      "Debian's prometheus package")
        self.dir = tempfile.mkdtemp(prefix="marquee-prometheus-")
        self.catalog = Service("catalog", flags={
            "catalog.demo": "true", "catalog.demo_file": DEMO,
            "catalog.admin_token": TOKEN})
        self.booking = Service("booking", flags={
            "booking.catalog_url": self.catalog.url})
        self.payment = Service("payment")
        routes = os.path.join(self.dir, "routes.json")
        with open(routes, "w") as f:
            json.dump({
                "pools": {
                    "catalog": {"instances": [f"{HOST}:{self.catalog.port}"]},
                    "booking": {"instances": [f"{HOST}:{self.booking.port}"],
                                "balance": "hash"}},
                "routes": [
                    {"pattern": "/v1/shows/{show_id}/seats",
                     "pool": "booking", "hash_param": "show_id"},
                    {"prefix": "/v1/", "pool": "catalog"}]}, f)
        self.gateway = Service("gateway", flags={"gateway.routes": routes})
        self.services = [self.gateway, self.payment, self.booking,
                         self.catalog]
        self.port = free_port()
        config = os.path.join(self.dir, "prometheus.yml")
        with open(config, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n"
                    "  evaluation_interval: 1s\nscrape_configs:\n")
            for svc in self.services:
                f.write(f"  - job_name: {svc.role}\n    static_configs:\n"
                        f"      - targets: ['{HOST}:{svc.port}']\n")
        self.log = open(os.path.join(self.dir, "prometheus.log"), "wb")
        self.prom = subprocess.Popen(
            [PROMETHEUS, f"--config.file={config}",
             f"--storage.tsdb.path={self.dir}/data",
             f"--web.listen-address={HOST}:{self.port}"],
            stdout=self.log, stderr=self.log, stdin=subprocess.DEVNULL)

    def tearDown(self):
        self.prom.terminate()
        try:
            self.prom.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.prom.kill()
            self.prom.wait()
        self.log.close()
        codes = [svc.stop() for svc in self.services]
        for svc in self.services:
            svc.close()
        shutil.rmtree(self.dir, ignore_errors=True)
        self.assertEqual(codes, [0] * len(self.services))

    def api(self, path, **params):
        url = f"http://{HOST}:{self.port}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return json.load(r)
        except OSError:
            return None

    def query(self, expr):
        got = self.api("query", query=expr)
        if not got or got.get("status") != "success":
            return None
        return got["data"]["result"]

    def prometheus_log(self):
        with open(os.path.join(self.dir, "prometheus.log"), "rb") as f:
            return f.read().decode("utf-8", "replace")[-4000:]

    def test_series_arrive_and_parse(self):
        _, _, m = self.booking.json("GET", "/v1/shows/8/seats")
        self.assertEqual(hold(self.booking, 8, seat_ids(m, 0, 2))[0], 201)
        # Traffic through the gateway, once its instances are up.
        seen = wait_for(lambda: self.gateway.request(
            "GET", "/v1/shows/8/seats")[0] == 200 or None, timeout=30,
            step=0.2)
        self.assertTrue(seen, "the gateway never routed to booking")
        status, _, _ = self.payment.request(
            "POST", "/v1/charges",
            body=json.dumps({"amount": 500, "currency": "INR",
                             "reference": "metrics-1",
                             "customer_id": "cust-m",
                             "card": {"token": "tok_visa"}}).encode(),
            headers={"Content-Type": "application/json",
                     "Idempotency-Key": "metrics-" + uuid.uuid4().hex})
        self.assertEqual(status, 201)

        def all_up():
            targets = self.api("targets")
            if not targets:
                return None
            active = targets["data"]["activeTargets"]
            ok = [t for t in active
                  if t["health"] == "up" and t["lastError"] == ""]
            return active if len(ok) == len(self.services) else None

        targets = wait_for(all_up, timeout=60, step=0.5)
        self.assertTrue(targets, "Prometheus did not scrape every service:\n"
                        f"{self.api('targets')}\n{self.prometheus_log()}")

        created = wait_for(lambda: self.query(
            'marquee_booking_holds_created_total{job="booking"} > 0'),
            timeout=30, step=0.5)
        self.assertTrue(created, "no holds counter in Prometheus")
        self.assertEqual(created[0]["value"][1], "1")

        # Histograms parse into buckets PromQL can take quantiles of.
        p99 = wait_for(lambda: self.query(
            'histogram_quantile(0.99, sum by (le) (rate('
            'marquee_http_request_duration_seconds_bucket{job="catalog"}'
            '[30s])))'), timeout=30, step=0.5)
        self.assertTrue(p99, "no latency histogram in Prometheus")
        self.assertRegex(p99[0]["value"][1], r"^[0-9.e+-]+$|^NaN$")

        up = self.query("up")
        self.assertEqual(sorted((r["metric"]["job"], r["value"][1])
                                for r in up),
                         [("booking", "1"), ("catalog", "1"),
                          ("gateway", "1"), ("payment", "1")])
        every = {"booking", "catalog", "gateway", "payment"}
        for series, jobs in (
                ("process_resident_memory_bytes", every),
                ("marquee_event_loop_lag_seconds", every),
                ("marquee_http_requests_total", every),
                # The gateway's store is its accounts database.
                ("marquee_store_commit_batch_size_count", every)):
            got = self.query(series)
            self.assertEqual({r["metric"]["job"] for r in got}, jobs, series)

        routed = wait_for(lambda: self.query(
            'marquee_gateway_upstream_requests_total'
            '{job="gateway",pool="booking"} > 0'), timeout=30, step=0.5)
        self.assertTrue(routed, "no gateway upstream counter in Prometheus")
        breaker = self.query('marquee_gateway_breaker_state{job="gateway"}')
        self.assertEqual({(r["metric"]["pool"], r["value"][1])
                          for r in breaker},
                         {("booking", "0"), ("catalog", "0")})
        charged = wait_for(lambda: self.query(
            'marquee_payment_charges_total'
            '{job="payment",result="succeeded"} > 0'), timeout=30, step=0.5)
        self.assertTrue(charged, "no payment counter in Prometheus")


if __name__ == "__main__":
    unittest.main()
