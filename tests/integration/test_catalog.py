"""The catalog service, started as the real binary and spoken to over HTTP.

Every response that the API description documents is also checked against
docs/api/openapi.yaml, so the description cannot drift from the service.
"""

import datetime
import json
import os
import socket
import subprocess
import threading
import time
import unittest

from support import ApiSchema, Service, marquee_bin, repo_path

TOKEN = "test-admin-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
DEMO = repo_path("data", "demo", "catalog.json")


def future(days=1, hour=12, minute=0):
    """An RFC 3339 UTC time `days` from today at hour:minute."""
    d = datetime.datetime.now(datetime.timezone.utc).date()
    t = datetime.datetime.combine(d + datetime.timedelta(days=days),
                                  datetime.time(hour, minute),
                                  tzinfo=datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


LAYOUT = {
    "categories": [{"code": "classic", "name": "Classic"},
                   {"code": "prime", "name": "Prime"}],
    "rows": [
        {"label": "A", "category": "classic", "seats": [1, 2, None, 3, 4]},
        {"label": "B", "category": "prime", "seats": [1, 2, None, 3, 4],
         "accessible": [1], "companion": [2]},
    ],
}


class CatalogCase(unittest.TestCase):
    """Starts one catalog per test class, with an empty database."""

    extra_flags = {}

    @classmethod
    def setUpClass(cls):
        flags = {"catalog.admin_token": TOKEN}
        flags.update(cls.extra_flags)
        cls.svc = Service("catalog", flags=flags)
        cls.api = ApiSchema.default()

    @classmethod
    def tearDownClass(cls):
        try:
            code = cls.svc.stop()
            assert code == 0, f"catalog exited with {code} after SIGTERM"
        finally:
            cls.svc.close()

    def call(self, method, path, body=None, headers=None, template=None,
             expect=None, documented_as=None):
        """One request; checks it against the API description and returns
        (status, headers, parsed body).  A 405 is documented under a method
        the path has: documented_as names it."""
        hdrs = dict(headers or {})
        status, got, raw = self.svc.request(method, path, body, hdrs)
        tmpl = template or self.api.template_for(path.split("?")[0])
        data = self.api.check(documented_as or method, tmpl, status, got, raw)
        if expect is not None:
            self.assertEqual(status, expect, f"{method} {path}: {raw[:600]}")
        return status, got, data

    def admin(self, path, body, expect=None):
        return self.call("POST", path, body, ADMIN, expect=expect)

    def problem(self, status, got, data, slug):
        self.assertEqual(got.get("content-type"), "application/problem+json")
        self.assertEqual(data["type"], f"/problems/{slug}", data)
        self.assertEqual(data["status"], status)
        self.assertTrue(data["request_id"])
        return data

    def field_codes(self, data):
        return {(e["field"], e["code"]) for e in data["errors"]}

    # Builders of valid records.

    def make_city(self, name):
        _, _, city = self.admin("/v1/admin/cities", {
            "name": name, "slug": name.lower().replace(" ", "-"),
            "utc_offset_minutes": 330, "currency": "INR"}, expect=201)
        return city

    def make_cinema(self, city_id, name="Marquee Test"):
        _, _, cinema = self.admin("/v1/admin/cinemas", {
            "city_id": city_id, "name": name, "address": "1 Test Road"},
            expect=201)
        return cinema

    def make_screen(self, cinema_id, name="Screen 1", layout=None):
        _, _, screen = self.admin(f"/v1/admin/cinemas/{cinema_id}/screens", {
            "name": name, "layout": layout or LAYOUT}, expect=201)
        return screen

    def make_movie(self, title="Test Movie", language="Hindi",
                   genres=("drama",), minutes=120):
        _, _, movie = self.admin("/v1/admin/movies", {
            "title": title, "language": language, "genres": list(genres),
            "duration_minutes": minutes, "certificate": "UA",
            "release_date": "2026-11-01", "synopsis": "A test."},
            expect=201)
        return movie

    def make_show(self, movie_id, screen_id, starts_at, **extra):
        body = {"movie_id": movie_id, "screen_id": screen_id,
                "starts_at": starts_at,
                "prices": {"classic": 20000, "prime": 30000}}
        body.update(extra)
        return self.admin("/v1/admin/shows", body)

    def world(self, city="Testville"):
        """A city, cinema, screen and movie, fresh for one test."""
        c = self.make_city(city)
        cin = self.make_cinema(c["id"])
        scr = self.make_screen(cin["id"])
        mov = self.make_movie(title=f"{city} Story")
        return c, cin, scr, mov


class AdminValidationTest(CatalogCase):
    """Every admin rule, each refused with a precise problem."""

    def test_city_created_and_read_back(self):
        city = self.make_city("Pune")
        self.assertEqual(city["currency"], "INR")
        _, _, page = self.call("GET", "/v1/cities", expect=200)
        self.assertIn(city, page["items"])

    def test_location_of_every_created_resource_reads_it_back(self):
        city, cinema, screen, movie = self.world("Locationville")
        _, got, show = self.make_show(movie["id"], screen["id"], future(5))
        self.assertEqual(got["location"], f"/v1/shows/{show['id']}")
        for kind, item in [("cities", city), ("cinemas", cinema),
                           ("screens", screen), ("movies", movie),
                           ("shows", show)]:
            _, _, back = self.call("GET", f"/v1/{kind}/{item['id']}",
                                   expect=200)
            self.assertEqual(back, item)

    def test_duplicate_city_is_409(self):
        self.make_city("Nagpur")
        status, got, data = self.admin("/v1/admin/cities", {
            "name": "Nagpur", "slug": "nagpur-2", "utc_offset_minutes": 330,
            "currency": "INR"}, expect=409)
        self.problem(status, got, data, "duplicate")

    def test_city_field_rules(self):
        status, got, data = self.admin("/v1/admin/cities", {
            "name": "", "slug": "Bad Slug", "utc_offset_minutes": 2000,
            "currency": "inr", "mayor": "x"}, expect=422)
        self.problem(status, got, data, "validation-failed")
        self.assertEqual(self.field_codes(data), {
            ("name", "too-short"), ("slug", "invalid-format"),
            ("utc_offset_minutes", "out-of-range"),
            ("currency", "invalid-format"), ("mayor", "unknown-field")})

    def test_missing_and_wrongly_typed_fields(self):
        status, got, data = self.admin("/v1/admin/movies", {
            "title": 7, "language": "Hindi", "genres": "drama",
            "duration_minutes": "120", "certificate": "UA"}, expect=422)
        self.problem(status, got, data, "validation-failed")
        self.assertEqual(self.field_codes(data), {
            ("title", "wrong-type"), ("genres", "wrong-type"),
            ("duration_minutes", "wrong-type"),
            ("release_date", "required")})

    def test_cinema_in_unknown_city(self):
        status, got, data = self.admin("/v1/admin/cinemas", {
            "city_id": 999999, "name": "Nowhere", "address": "x"},
            expect=422)
        self.problem(status, got, data, "validation-failed")
        self.assertEqual(self.field_codes(data),
                         {("city_id", "unknown-reference")})

    def test_screen_of_unknown_cinema_is_404(self):
        status, got, data = self.admin("/v1/admin/cinemas/999999/screens",
                                       {"name": "S", "layout": LAYOUT},
                                       expect=404)
        self.problem(status, got, data, "not-found")

    def test_layout_with_duplicate_seat(self):
        city = self.make_city("Dupetown")
        cinema = self.make_cinema(city["id"])
        layout = json.loads(json.dumps(LAYOUT))
        layout["rows"][0]["seats"] = [1, 2, None, 2, 3]
        status, got, data = self.admin(
            f"/v1/admin/cinemas/{cinema['id']}/screens",
            {"name": "S1", "layout": layout}, expect=422)
        self.problem(status, got, data, "validation-failed")
        self.assertEqual(self.field_codes(data),
                         {("layout.rows[0].seats[3]", "duplicate-seat")})
        self.assertIn("A2", data["errors"][0]["detail"])

    def test_layout_rules(self):
        city = self.make_city("Layoutville")
        cinema = self.make_cinema(city["id"])
        layout = {
            "categories": [{"code": "classic", "name": "Classic"},
                           {"code": "classic", "name": "Again"}],
            "rows": [
                {"label": "A", "category": "gold", "seats": [1, 2]},
                {"label": "A", "category": "classic", "seats": [1]},
                {"label": "B", "category": "classic", "seats": [None]},
                {"label": "C", "category": "classic", "seats": [1, 2],
                 "accessible": [5], "companion": []},
            ],
        }
        status, got, data = self.admin(
            f"/v1/admin/cinemas/{cinema['id']}/screens",
            {"name": "S1", "layout": layout}, expect=422)
        self.problem(status, got, data, "validation-failed")
        self.assertEqual(self.field_codes(data), {
            ("layout.categories[1].code", "duplicate-category"),
            ("layout.rows[0].category", "unknown-category"),
            ("layout.rows[1].label", "duplicate-row"),
            ("layout.rows[2].seats", "empty-row"),
            ("layout.rows[3].accessible[0]", "unknown-seat")})

    def test_screen_seat_count_and_layout_normalized(self):
        city = self.make_city("Countville")
        cinema = self.make_cinema(city["id"])
        screen = self.make_screen(cinema["id"])
        self.assertEqual(screen["seat_count"], 8)
        self.assertEqual(screen["layout"]["rows"][0]["accessible"], [])
        self.assertEqual(screen["layout"]["rows"][1]["companion"], [2])

    def test_show_rules(self):
        _, _, screen, movie = self.world("Showville")
        status, got, data = self.make_show(
            movie["id"], screen["id"], future(2),
            prices={"classic": -1, "gold": 500})
        self.assertEqual(status, 422)
        self.problem(status, got, data, "validation-failed")
        self.assertEqual(self.field_codes(data), {
            ("prices.classic", "negative-price"),
            ("prices.gold", "unknown-category"),
            ("prices.prime", "missing-price")})

    def test_show_cancellation_policy(self):
        _, _, screen, movie = self.world("Policyville")
        status, _, show = self.make_show(movie["id"], screen["id"], future(2))
        self.assertEqual(status, 201)
        self.assertEqual(show["cancellation"],
                         {"until_minutes_before": 120, "fee_percent": 10})
        status, _, show = self.make_show(
            movie["id"], screen["id"], future(6),
            cancellation={"until_minutes_before": 0, "fee_percent": 100})
        self.assertEqual(status, 201)
        status, _, raw = self.svc.request("GET", f"/v1/shows/{show['id']}")
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(raw)["cancellation"],
                         {"until_minutes_before": 0, "fee_percent": 100})
        status, got, data = self.make_show(
            movie["id"], screen["id"], future(10),
            cancellation={"until_minutes_before": 10081, "fee_percent": -1,
                          "refund": True})
        self.problem(status, got, data, "validation-failed")
        self.assertEqual(self.field_codes(data), {
            ("cancellation.until_minutes_before", "out-of-range"),
            ("cancellation.fee_percent", "negative"),
            ("cancellation.refund", "unknown-field")})
        status, _, data = self.make_show(movie["id"], screen["id"],
                                         future(10), cancellation=[])
        self.assertEqual(self.field_codes(data),
                         {("cancellation", "wrong-type")})

    def test_show_in_the_past(self):
        _, _, screen, movie = self.world("Pastville")
        status, got, data = self.make_show(movie["id"], screen["id"],
                                           "2020-01-01T10:00:00Z")
        self.assertEqual(status, 422)
        self.assertEqual(self.field_codes(data),
                         {("starts_at", "show-in-past")})

    def test_show_with_bad_times_and_references(self):
        _, _, screen, movie = self.world("Timeville")
        status, _, data = self.make_show(movie["id"], screen["id"],
                                         "tomorrow at noon")
        self.assertEqual(status, 422)
        self.assertEqual(self.field_codes(data),
                         {("starts_at", "invalid-format")})
        status, _, data = self.make_show(movie["id"], screen["id"],
                                         future(2, 12), ends_at=future(2, 11))
        self.assertEqual(self.field_codes(data),
                         {("ends_at", "invalid-range")})
        status, _, data = self.make_show(999999, 999998, future(2))
        self.assertEqual(status, 422)
        self.assertEqual(self.field_codes(data), {
            ("movie_id", "unknown-reference"),
            ("screen_id", "unknown-reference")})

    def test_overlapping_shows_on_one_screen(self):
        _, _, screen, movie = self.world("Overlapville")
        status, _, first = self.make_show(movie["id"], screen["id"],
                                          future(3, 10))
        self.assertEqual(status, 201)
        # 120-minute movie from 10:00: 11:59 overlaps, 12:00 does not.
        status, got, data = self.make_show(movie["id"], screen["id"],
                                           future(3, 11, 59))
        self.assertEqual(status, 409)
        self.problem(status, got, data, "show-overlap")
        self.assertIn(str(first["id"]), data["detail"])
        status, _, _ = self.make_show(movie["id"], screen["id"],
                                      future(3, 12, 0))
        self.assertEqual(status, 201)

    def test_concurrent_overlapping_shows_only_one_wins(self):
        _, _, screen, movie = self.world("Raceville")
        results = []

        def post(minute):
            status, _, _ = self.make_show(movie["id"], screen["id"],
                                          future(4, 15, minute))
            results.append(status)

        threads = [threading.Thread(target=post, args=(m,))
                   for m in range(0, 40, 5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(sorted(results), [201] + [409] * 7)

    def test_cancel_show(self):
        _, _, screen, movie = self.world("Cancelville")
        _, _, show = self.make_show(movie["id"], screen["id"], future(2, 9))
        path = f"/v1/admin/shows/{show['id']}/cancel"
        _, _, data = self.admin(path, {"reason": "Projector failure"},
                                expect=200)
        self.assertEqual(data["status"], "cancelled")
        self.assertEqual(data["cancel_reason"], "Projector failure")
        self.assertEqual(data["version"], show["version"] + 1)
        # Cancelling again changes nothing and says the same.
        _, _, again = self.admin(path, {}, expect=200)
        self.assertEqual(again["version"], data["version"])
        status, got, err = self.admin("/v1/admin/shows/999999/cancel", {},
                                      expect=404)
        self.problem(status, got, err, "not-found")
        # The cancelled show leaves the listings at once.
        _, _, listing = self.call(
            "GET", f"/v1/movies/{movie['id']}/shows?city="
                   f"{data['cinema']['city_id']}&date={future(2)[:10]}",
            expect=200)
        ids = [s["id"] for g in listing["cinemas"] for s in g["shows"]]
        self.assertNotIn(show["id"], ids)

    def test_cancel_without_a_body_uses_the_default_reason(self):
        _, _, screen, movie = self.world("Quietville")
        _, _, show = self.make_show(movie["id"], screen["id"], future(2, 9))
        status, got, raw = self.svc.request(
            "POST", f"/v1/admin/shows/{show['id']}/cancel", None, ADMIN)
        self.assertEqual(status, 200, raw)
        data = json.loads(raw)
        self.assertEqual(data["status"], "cancelled")
        self.assertTrue(data["cancel_reason"])

    def test_authentication_comes_before_the_path(self):
        # A stranger learns nothing, not even that the id is malformed.
        status, got, data = self.call("POST", "/v1/admin/shows/x/cancel", {},
                                      template="/v1/admin/shows/{show_id}"
                                               "/cancel", expect=401)
        self.problem(status, got, data, "unauthorized")
        status, got, data = self.call("POST", "/v1/admin/shows/x/cancel", {},
                                      ADMIN, template="/v1/admin/shows/"
                                                      "{show_id}/cancel",
                                      expect=404)

    def test_admin_needs_the_token(self):
        for headers in ({}, {"Authorization": "Bearer wrong"},
                        {"Authorization": f"Basic {TOKEN}"}):
            status, got, data = self.call("POST", "/v1/admin/cities",
                                          {"name": "X"}, headers,
                                          expect=401)
            self.problem(status, got, data, "unauthorized")
            self.assertIn("Bearer", got.get("www-authenticate", ""))


class AdminDisabledTest(CatalogCase):
    extra_flags = {"catalog.admin_token": ""}

    def test_no_token_configured_means_403(self):
        status, got, data = self.call("POST", "/v1/admin/cities", {},
                                      {"Authorization": "Bearer "},
                                      expect=403)
        self.problem(status, got, data, "admin-disabled")


class BadInputTest(CatalogCase):
    extra_flags = {"http.max_body_bytes": "4096",
                   "http.request_timeout_ms": "1000",
                   "http.access_log": "true"}

    def test_malformed_json(self):
        status, got, data = self.call("POST", "/v1/admin/cities",
                                      b'{"name": "Pune",', {
                                          **ADMIN,
                                          "Content-Type": "application/json"},
                                      expect=400)
        self.problem(status, got, data, "malformed-json")
        self.assertIn("line 1", data["detail"])

    def test_body_that_is_not_an_object(self):
        status, got, data = self.call("POST", "/v1/admin/cities", [1, 2],
                                      ADMIN, expect=400)
        self.problem(status, got, data, "malformed-json")

    def test_wrong_content_type(self):
        status, got, data = self.call("POST", "/v1/admin/cities", b"{}", {
            **ADMIN, "Content-Type": "text/plain"}, expect=415)
        self.problem(status, got, data, "unsupported-media-type")

    def test_oversized_body_is_413_and_nothing_written(self):
        body = {"name": "Big", "slug": "big", "utc_offset_minutes": 0,
                "currency": "INR", "pad": "x" * 8000}
        status, got, data = self.call("POST", "/v1/admin/cities", body,
                                      ADMIN, template="/v1/admin/cities",
                                      expect=413)
        self.assertEqual(got.get("content-type"), "application/problem+json")
        self.assertEqual(data["type"], "/problems/payload-too-large")
        _, _, page = self.call("GET", "/v1/cities?limit=100", expect=200)
        self.assertNotIn("Big", [c["name"] for c in page["items"]])

    def test_oversized_headers_are_431(self):
        status, got, data = self.call("GET", "/v1/cities",
                                      headers={"X-Pad": "y" * 20000},
                                      expect=431)
        self.problem(status, got, data, "headers-too-large")

    def test_bad_ids_queries_and_methods(self):
        status, got, data = self.call("GET", "/v1/shows/abc", expect=404)
        self.problem(status, got, data, "not-found")
        status, got, data = self.call("GET", "/v1/cities?limit=0",
                                      expect=400)
        self.problem(status, got, data, "invalid-query")
        status, got, data = self.call("GET", "/v1/cities?cursor=zzz",
                                      expect=400)
        self.problem(status, got, data, "invalid-query")
        status, got, data = self.call("DELETE", "/v1/cities",
                                      template="/v1/cities", expect=405,
                                      documented_as="GET")
        self.problem(status, got, data, "method-not-allowed")
        self.assertEqual(got.get("allow"), "GET")

    def test_slow_client_is_cut_off_without_blocking_others(self):
        slow = self.svc.raw_socket()
        slow.sendall(b"GET /v1/cities HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        # Others are served at once while the slow client dawdles.
        for _ in range(20):
            self.call("GET", "/v1/cities", expect=200)
        self.assertLess(time.monotonic() - started, 5)
        slow.settimeout(10)
        data = slow.recv(4096)
        waited = time.monotonic() - started
        self.assertEqual(data, b"", "the server should close the slow "
                                    "connection without an answer")
        self.assertGreater(waited, 0.5)
        slow.close()

    def test_slow_body_is_cut_off(self):
        slow = self.svc.raw_socket()
        slow.sendall(b"POST /v1/admin/cities HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{\"name\"")
        slow.settimeout(10)
        self.assertEqual(slow.recv(4096), b"")
        slow.close()

    def test_request_id_echoed_or_generated(self):
        _, got, _ = self.call("GET", "/v1/cities",
                              headers={"X-Request-Id": "trace-42"})
        self.assertEqual(got["x-request-id"], "trace-42")
        _, got, _ = self.call("GET", "/v1/cities")
        self.assertRegex(got["x-request-id"], r"^[0-9a-f]{16}$")
        # The access log names each request by its id.
        deadline = time.monotonic() + 5
        while "id=trace-42" not in self.svc.log():
            self.assertLess(time.monotonic(), deadline, "id not logged")
            time.sleep(0.05)


class DemoReadsTest(unittest.TestCase):
    """Public reads over the demo data set."""

    @classmethod
    def setUpClass(cls):
        cls.svc = Service("catalog", flags={"catalog.demo": "true",
                                            "catalog.demo_file": DEMO})
        cls.api = ApiSchema.default()

    @classmethod
    def tearDownClass(cls):
        try:
            assert cls.svc.stop() == 0
        finally:
            cls.svc.close()

    def get(self, path, headers=None, expect=200):
        status, got, raw = self.svc.request("GET", path, headers=headers)
        data = self.api.check("GET", self.api.template_for(path.split("?")[0]),
                              status, got, raw)
        self.assertEqual(status, expect, raw[:500])
        return got, data

    def local_date(self, days=1):
        ist = datetime.timezone(datetime.timedelta(minutes=330))
        d = datetime.datetime.now(ist).date() + datetime.timedelta(days=days)
        return d.isoformat()

    def test_cities_paginate_with_cursor(self):
        seen, cursor = [], None
        for _ in range(10):
            path = "/v1/cities?limit=1" + (f"&cursor={cursor}" if cursor
                                           else "")
            _, page = self.get(path)
            seen += [c["name"] for c in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        self.assertEqual(seen, ["Mumbai", "Bengaluru", "Delhi"])

    def test_movies_in_city_with_filters(self):
        _, page = self.get("/v1/cities/1/movies?limit=100")
        self.assertEqual(len(page["items"]), 6)
        _, page = self.get("/v1/cities/1/movies?language=hindi")
        self.assertEqual(sorted(m["title"] for m in page["items"]),
                         ["Monsoon Express", "Shaadi Season"])
        _, page = self.get("/v1/cities/1/movies?genre=Thriller")
        self.assertEqual(sorted(m["title"] for m in page["items"]),
                         ["Monsoon Express", "Nizhal"])
        _, page = self.get(f"/v1/cities/1/movies?date={self.local_date(1)}")
        self.assertTrue(page["items"])
        _, page = self.get("/v1/cities/1/movies?date=2020-01-01")
        self.assertEqual(page["items"], [])
        self.get("/v1/cities/1/movies?date=2026-02-30", expect=400)
        self.get("/v1/cities/99/movies", expect=404)

    def test_movie_and_its_shows_grouped_by_cinema(self):
        _, movie = self.get("/v1/movies/1")
        self.assertEqual(movie["title"], "Monsoon Express")
        date = self.local_date(2)
        _, day = self.get(f"/v1/movies/1/shows?city=1&date={date}")
        self.assertEqual(day["date"], date)
        self.assertEqual(day["city"]["name"], "Mumbai")
        names = [g["cinema"]["name"] for g in day["cinemas"]]
        self.assertEqual(names, sorted(names))
        self.assertTrue(names)
        ist = datetime.timezone(datetime.timedelta(minutes=330))
        for group in day["cinemas"]:
            starts = [s["starts_at"] for s in group["shows"]]
            self.assertEqual(starts, sorted(starts))
            for s in starts:
                local = datetime.datetime.fromisoformat(
                    s.replace("Z", "+00:00")).astimezone(ist)
                self.assertEqual(local.date().isoformat(), date)
        self.get("/v1/movies/1/shows", expect=400)
        self.get("/v1/movies/1/shows?city=1abc", expect=400)
        self.get("/v1/movies/424242/shows?city=1", expect=404)

    def test_day_listing_without_date_is_today(self):
        _, day = self.get("/v1/movies/1/shows?city=1")
        self.assertEqual(day["date"], self.local_date(0))
        ist = datetime.timezone(datetime.timedelta(minutes=330))
        now = datetime.datetime.now(datetime.timezone.utc)
        for group in day["cinemas"]:
            for s in group["shows"]:
                t = datetime.datetime.fromisoformat(
                    s["starts_at"].replace("Z", "+00:00"))
                self.assertGreater(t, now)
                self.assertEqual(t.astimezone(ist).date().isoformat(),
                                 self.local_date(0))

    def test_head_has_the_headers_and_no_body(self):
        _, get_headers, get_raw = self.svc.request("GET", "/v1/shows/1")
        sock = self.svc.raw_socket()
        sock.sendall(b"HEAD /v1/shows/1 HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while data.count(b"HTTP/1.1 200") < 2 or not data.endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        sock.close()
        head, rest = data.split(b"\r\n\r\n", 1)
        self.assertIn(f"content-length: {len(get_raw)}".encode(),
                      head.lower())
        self.assertIn(f'etag: {get_headers["etag"]}'.encode(), head.lower())
        # The next answer follows at once: no body was sent for HEAD.
        self.assertTrue(rest.startswith(b"HTTP/1.1 200"), rest[:80])
        self.assertTrue(rest.endswith(b'{"status":"alive"}'))

    def test_show_with_layout_and_prices(self):
        _, show = self.get("/v1/shows/1")
        layout = show["screen"]["layout"]
        codes = {c["code"] for c in layout["categories"]}
        self.assertEqual(set(show["prices"]), codes)
        seats = sum(1 for r in layout["rows"] for s in r["seats"]
                    if s is not None)
        self.assertEqual(seats, show["screen"]["seat_count"])
        self.get("/v1/shows/999999", expect=404)

    def test_etag_gives_304(self):
        got, _ = self.get("/v1/shows/1")
        etag = got["etag"]
        self.assertRegex(etag, r'^"[0-9a-f]{16}"$')
        self.assertIn("max-age", got["cache-control"])
        status, got2, raw = self.svc.request("GET", "/v1/shows/1",
                                             headers={"If-None-Match": etag})
        self.assertEqual(status, 304)
        self.assertEqual(raw, b"")
        self.assertEqual(got2["etag"], etag)
        status, _, _ = self.svc.request(
            "GET", "/v1/shows/1", headers={"If-None-Match": '"0000"'})
        self.assertEqual(status, 200)

    def test_health_and_readiness(self):
        self.get("/healthz")
        _, data = self.get("/readyz")
        self.assertEqual(data["status"], "ready")


class LifecycleTest(unittest.TestCase):
    """Writes survive a restart; SIGTERM drains requests in flight."""

    def test_writes_survive_restart_and_cache_follows_writes(self):
        svc = Service("catalog", flags={"catalog.admin_token": TOKEN})
        try:
            status, _, before = svc.json("GET", "/v1/cities")
            self.assertEqual(before["items"], [])
            status, _, city = svc.json("POST", "/v1/admin/cities", {
                "name": "Kochi", "slug": "kochi", "utc_offset_minutes": 330,
                "currency": "INR"}, ADMIN)
            self.assertEqual(status, 201)
            # The cached empty list must not be served after the write.
            _, _, after = svc.json("GET", "/v1/cities")
            self.assertEqual(after["items"], [city])
            self.assertEqual(svc.stop(), 0)
            svc.start()
            _, _, again = svc.json("GET", "/v1/cities")
            self.assertEqual(again["items"], [city])
        finally:
            code = svc.stop()
            svc.close()
        self.assertEqual(code, 0)

    def test_sigterm_with_requests_in_flight(self):
        svc = Service("catalog", flags={"catalog.admin_token": TOKEN,
                                        "catalog.demo": "true",
                                        "catalog.demo_file": DEMO})
        answered, broken, created = [], [], []
        stop = threading.Event()

        def worker(n):
            i = 0
            while not stop.is_set():
                i += 1
                try:
                    if i % 3 == 0:
                        status, _, body = svc.json(
                            "POST", "/v1/admin/movies", {
                                "title": f"Drain {n}-{i}", "language": "Hindi",
                                "genres": ["drama"], "duration_minutes": 90,
                                "certificate": "U",
                                "release_date": "2026-01-01"}, ADMIN,
                            timeout=15)
                        if status == 201:
                            created.append(body["id"])
                    else:
                        status, _, body = svc.json("GET", "/v1/shows/1",
                                                   timeout=15)
                    answered.append(status)
                except (ConnectionError, socket.timeout, OSError) as e:
                    # Refused or closed before an answer once stopping:
                    # nothing was half-answered.
                    broken.append(type(e).__name__)
                    if isinstance(e, socket.timeout):
                        stop.set()
                except AssertionError as e:
                    broken.append(f"bad body: {e}")

        threads = [threading.Thread(target=worker, args=(n,))
                   for n in range(8)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        started = time.monotonic()
        try:
            code = svc.stop(timeout=15)
        finally:
            stop.set()
            for t in threads:
                t.join()
        self.assertEqual(code, 0)
        self.assertLess(time.monotonic() - started, 12)
        self.assertGreater(len(answered), 50)
        self.assertTrue(set(answered) <= {200, 201}, set(answered))
        self.assertNotIn("timeout", broken)
        self.assertFalse([b for b in broken if b.startswith("bad body")])
        # Every write that was acknowledged is there after a restart.
        svc.start()
        try:
            for movie_id in created:
                status, _, _ = svc.json("GET", f"/v1/movies/{movie_id}")
                self.assertEqual(status, 200, movie_id)
        finally:
            self.assertEqual(svc.stop(), 0)
            svc.close()

    def test_bad_configuration_named_in_the_error(self):
        binary = marquee_bin()
        out = subprocess.run([binary, "catalog", "--http.threads=abc"],
                             capture_output=True, text=True, timeout=20)
        self.assertEqual(out.returncode, 1)
        self.assertIn("key=http.threads", out.stderr)
        self.assertIn('value="abc"', out.stderr)
        self.assertIn("source=--http.threads", out.stderr)
        out = subprocess.run([binary, "catalog", "--no.such=1"],
                             capture_output=True, text=True, timeout=20)
        self.assertEqual(out.returncode, 1)
        self.assertIn("unknown key key=no.such", out.stderr)
        env = dict(os.environ, MARQUEE_HTTP_PORT="70000")
        out = subprocess.run([binary, "catalog"], capture_output=True,
                             text=True, timeout=20, env=env)
        self.assertEqual(out.returncode, 1)
        self.assertIn("source=MARQUEE_HTTP_PORT", out.stderr)


if __name__ == "__main__":
    unittest.main()
