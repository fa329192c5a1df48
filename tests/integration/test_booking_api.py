"""The booking service's HTTP API against its description,
docs/api/booking.yaml.

A real catalog (demo data) and a real booking service answer every route
and every error case a client can provoke; each answer is checked with
ApiSchema: its status must be documented for the operation, its required
headers present, and its body must match the documented schema.  A second
booking service, whose catalog accepts connections but never answers,
provides the answers that need a request to stay in flight (503, and 409
idempotency-key-in-flight).
"""

import datetime
import json
import socket
import sys
import threading
import time
import unittest
import uuid

from support import HOST, ApiSchema, Service
from test_booking import TOKEN, Platform, seat_ids

ADMIN = {"Authorization": f"Bearer {TOKEN}"}
JSON_TYPE = {"Content-Type": "application/json"}
# Small enough that a test can exceed it cheaply.
MAX_BODY_BYTES = 4096
# Demo shows that start at least this far ahead stay on sale for the test.
SHOW_LEAD_S = 6 * 3600
WAIT_S = 10.0

# (method, path template, status, problem slug or "", with "(replayed)"
# for idempotent replays) of every answer checked, printed at the end.
CHECKED = []


def api():
    return ApiSchema.for_file("booking.yaml")


def customer():
    return "c-" + uuid.uuid4().hex[:12]


def key():
    return "k-" + uuid.uuid4().hex


def future(days, hour=23):
    day = datetime.datetime.now(datetime.timezone.utc).date()
    t = datetime.datetime.combine(day + datetime.timedelta(days=days),
                                  datetime.time(hour, 0),
                                  tzinfo=datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def hold_request(show, seats, cust, idem):
    """call() arguments of a hold request with an Idempotency-Key."""
    return ("POST", f"/v1/shows/{show}/holds", {"seats": seats},
            {"X-Customer-Id": cust, "Idempotency-Key": idem})


def raw_exchange(svc, data):
    """Writes raw bytes and reads the answer until the server closes.

    Returns (status, headers with lower-case names, body bytes)."""
    with svc.raw_socket() as sock:
        sock.sendall(data)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


class ApiCase(unittest.TestCase):
    """Requests checked against booking.yaml."""

    svc = None

    def call(self, method, path, body=None, headers=None, expect=None,
             ptype=None, template=None, documented_as=None):
        """One request, checked against the description.

        expect is the status wanted and ptype the problem slug wanted.  A
        405 is documented under a method the path has: documented_as names
        it.  Returns (headers, parsed body or None)."""
        status, got, raw = self.svc.request(method, path, body, headers)
        return self.checked(documented_as or method, template or path,
                            status, got, raw, expect, ptype)

    def checked(self, method, path, status, got, raw, expect=None,
                ptype=None):
        template = api().template_for(path.split("?")[0])
        data = api().check(method, template, status, got, raw)
        where = f"{method} {path} -> {status}: {raw[:600]!r}"
        if expect is not None:
            self.assertEqual(status, expect, where)
        slug = ""
        if status >= 400 and isinstance(data, dict):
            self.assertEqual(got.get("content-type"),
                             "application/problem+json", where)
            self.assertEqual(data["status"], status, where)
            slug = data["type"].rsplit("/", 1)[-1]
            if ptype is not None:
                self.assertEqual(slug, ptype, where)
        elif status >= 400:
            slug = got.get("content-type", "").split(";")[0]
        if got.get("idempotent-replayed") == "true":
            slug = f"{slug} (replayed)".strip()
        CHECKED.append((method, template, status, slug))
        return got, data

    def replay(self, method, path, body=None, headers=None, expect=None,
               ptype=None):
        """Sends a request again with the same Idempotency-Key; returns the
        replayed answer like call().

        A refusal is stored only after it was answered, and its key counts
        as in flight until then, so a prompt repeat may meet 409
        idempotency-key-in-flight first: that is checked and retried."""
        deadline = time.monotonic() + WAIT_S
        while True:
            status, got, raw = self.svc.request(method, path, body, headers)
            if status != 409 or b"/idempotency-key-in-flight" not in raw:
                break
            self.checked(method, path, status, got, raw, 409,
                         "idempotency-key-in-flight")
            self.assertLess(time.monotonic(), deadline,
                            f"{method} {path}: the key stays in flight")
            time.sleep(0.05)
        got, data = self.checked(method, path, status, got, raw, expect,
                                 ptype)
        self.assertEqual(got.get("idempotent-replayed"), "true",
                         f"{method} {path}: not a replay: {raw[:300]!r}")
        return got, data

    def create(self, show, seats, cust=None, idem=None, expect=None,
               ptype=None):
        headers = {"X-Customer-Id": cust or customer()}
        if idem:
            headers["Idempotency-Key"] = idem
        return self.call("POST", f"/v1/shows/{show}/holds", {"seats": seats},
                         headers, expect=expect, ptype=ptype)

    def seatmap(self, show):
        return self.call("GET", f"/v1/shows/{show}/seats", expect=200)[1]


def pick_shows(catalog, count):
    """Ids of demo shows that are scheduled and start well ahead."""
    now = time.time()
    picked = []
    for show_id in range(1, 1000):
        status, _, show = catalog.json("GET", f"/v1/shows/{show_id}")
        if status == 404:
            break
        starts = datetime.datetime.fromisoformat(
            show["starts_at"].replace("Z", "+00:00")).timestamp()
        if show["status"] == "scheduled" and starts - now > SHOW_LEAD_S:
            picked.append(show_id)
            if len(picked) == count:
                return picked
    raise AssertionError(f"the demo data has fewer than {count} shows "
                         f"starting more than {SHOW_LEAD_S} s from now")


class BookingApiTest(ApiCase):

    @classmethod
    def setUpClass(cls):
        cls.p = Platform(booking_flags={
            "booking.max_seats_per_customer": "4",
            "booking.max_extensions": "1",
            "http.max_body_bytes": str(MAX_BODY_BYTES)})
        cls.svc = cls.p.booking
        try:
            cls.shows = iter(pick_shows(cls.p.catalog, 12))
        except BaseException:
            cls.p.close()
            raise

    @classmethod
    def tearDownClass(cls):
        codes = cls.p.close()
        assert codes == [0, 0], codes

    def next_show(self):
        return next(self.shows)

    # ------------------------------------------------------------ health

    def test_health(self):
        _, body = self.call("GET", "/healthz", expect=200)
        self.assertEqual(body, {"status": "alive"})
        _, body = self.call("GET", "/readyz", expect=200)
        self.assertEqual(body, {"status": "ready"})

    # ------------------------------------------------------------ seat map

    def test_seat_map_and_revalidation(self):
        show = self.next_show()
        got, m = self.call("GET", f"/v1/shows/{show}/seats", expect=200,
                           headers={"X-Request-Id": "seatmap-1"})
        self.assertEqual(got["cache-control"], "no-cache")
        self.assertEqual(got["x-request-id"], "seatmap-1")
        self.assertEqual(m["status"], "open")
        for row in m["rows"]:
            self.assertEqual(len(row["states"]), len(row["seats"]))
        got304, body = self.call("GET", f"/v1/shows/{show}/seats",
                                 headers={"If-None-Match": got["etag"]},
                                 expect=304)
        self.assertIsNone(body)
        self.assertEqual(got304["etag"], got["etag"])
        # A hold changes the map, so the old tag no longer matches.
        self.create(show, seat_ids(m, 1, 2), expect=201)
        got2, m2 = self.call("GET", f"/v1/shows/{show}/seats",
                             headers={"If-None-Match": got["etag"]},
                             expect=200)
        self.assertNotEqual(got2["etag"], got["etag"])
        self.assertEqual(m2["counts"]["held"], 2)
        self.assertEqual(m2["rows"][1]["states"].count("H"), 2)
        # HEAD: the same headers, no body.
        status, head, raw = self.svc.request("HEAD", f"/v1/shows/{show}/seats")
        self.assertEqual((status, raw), (200, b""))
        self.assertEqual(head["etag"], got2["etag"])

    def test_seat_map_not_found(self):
        self.call("GET", "/v1/shows/987654/seats", expect=404,
                  ptype="not-found")
        self.call("GET", "/v1/shows/0/seats", expect=404, ptype="not-found")
        self.call("GET", "/v1/shows/first/seats", expect=404,
                  ptype="not-found")

    # ------------------------------------------------------------ holds

    def test_hold_lifecycle(self):
        show = self.next_show()
        m = self.seatmap(show)
        seats = seat_ids(m, 0, 2)
        who = customer()
        got, h = self.create(show, seats, who, expect=201)
        self.assertEqual(got["location"], f"/v1/holds/{h['id']}")
        self.assertNotIn("idempotent-replayed", got)
        self.assertEqual([s["id"] for s in h["seats"]], seats)
        self.assertEqual(h["total"], sum(s["price"] for s in h["seats"]))
        self.assertEqual((h["customer_id"], h["status"]), (who, "active"))
        self.assertEqual((h["extensions"], h["extensions_left"]), (0, 1))
        path = f"/v1/holds/{h['id']}"
        mine = {"X-Customer-Id": who}

        _, again = self.call("GET", path, headers=mine, expect=200)
        self.assertEqual(again, h)
        _, ext = self.call("POST", f"{path}/extend", headers=mine,
                           expect=200)
        self.assertEqual((ext["extensions"], ext["extensions_left"]), (1, 0))
        self.assertLessEqual(ext["expires_at"], ext["max_expires_at"])
        self.call("POST", f"{path}/extend", {}, mine, expect=409,
                  ptype="extension-limit")

        _, released = self.call("DELETE", path, headers=mine, expect=200)
        self.assertEqual(released["status"], "released")
        # Releasing again answers how it ended.
        _, twice = self.call("DELETE", path, headers=mine, expect=200)
        self.assertEqual(twice["status"], "released")
        _, read = self.call("GET", path, headers=mine, expect=200)
        self.assertEqual(read["status"], "released")
        self.call("POST", f"{path}/extend", headers=mine, expect=409,
                  ptype="hold-not-active")
        self.assertEqual(self.seatmap(show)["counts"]["held"], 0)

    def test_hold_refusals(self):
        show = self.next_show()
        m = self.seatmap(show)
        a, b, c = seat_ids(m, 2, 3)
        self.create(show, [a, b], expect=201)
        _, body = self.create(show, [b, c], expect=409, ptype="seats-taken")
        self.assertEqual(body["seats"], [b])
        # The limit is 4 seats per customer and show.
        who = customer()
        row = seat_ids(m, 3)
        self.create(show, row[0:2], who, expect=201)
        self.create(show, row[2:4], who, expect=201)
        self.create(show, row[4:5], who, expect=409, ptype="customer-limit")

    def test_show_closed_after_a_cancel_event(self):
        show = self.next_show()
        m = self.seatmap(show)
        status, _, body = self.p.catalog.json(
            "POST", f"/v1/admin/shows/{show}/cancel", {}, ADMIN)
        self.assertEqual(status, 200, body)
        _, accepted = self.call("POST", "/internal/v1/show-events",
                                {"type": "show.cancelled", "show_id": show,
                                 "version": body["version"]}, expect=202)
        self.assertEqual(accepted, {"status": "accepted", "show_id": show})
        deadline = time.monotonic() + WAIT_S
        while self.seatmap(show)["status"] != "cancelled":
            self.assertLess(time.monotonic(), deadline,
                            "the event did not refresh the show")
            time.sleep(0.05)
        self.create(show, seat_ids(m, 0, 1), expect=409, ptype="show-closed")

    def test_orphan_seat_rule(self):
        status, _, show = self.p.catalog.json(
            "POST", "/v1/admin/shows",
            {"movie_id": 1, "screen_id": 3, "starts_at": future(25),
             "prices": {"classic": 18000, "prime": 25000},
             "no_orphan_seats": True}, ADMIN)
        self.assertEqual(status, 201, show)
        m = self.seatmap(show["id"])
        # The second seat of a block strands the first.
        _, body = self.create(show["id"], [seat_ids(m, 0)[1]], expect=409,
                              ptype="orphan-seat")
        self.assertIn(seat_ids(m, 0)[0], body["seats"])

    def test_hold_validation(self):
        show = self.next_show()
        m = self.seatmap(show)
        a, b = seat_ids(m, 0, 2)
        cases = [
            ({"seats": ["Z999", a, "ZZ1"]}, [("seats[0]", "unknown-seat"),
                                             ("seats[2]", "unknown-seat")]),
            ({"seats": [7]}, [("seats[0]", "wrong-type")]),
            ({"seats": ["A" * 12]}, [("seats[0]", "unknown-seat")]),
            ({"seats": [a, b, a]}, [("seats[2]", "duplicate-seat")]),
            ({"seats": []}, [("seats", "empty")]),
            ({"seats": seat_ids(m, 4)[:11]}, [("seats", "too-many-seats")]),
            ({"seats": [a], "note": 1}, [("note", "unknown-field")]),
            ({}, [("seats", "required")]),
            ({"seats": a}, [("seats", "wrong-type")]),
        ]
        for body, want in cases:
            with self.subTest(body=body):
                _, data = self.call("POST", f"/v1/shows/{show}/holds", body,
                                    {"X-Customer-Id": customer()},
                                    expect=422, ptype="validation-failed")
                self.assertEqual([(e["field"], e["code"])
                                  for e in data["errors"]], want)
        # Nothing was held by any of them.
        self.assertEqual(self.seatmap(show)["counts"]["held"], 0)

    def test_hold_bad_requests(self):
        show = self.next_show()
        path = f"/v1/shows/{show}/holds"
        seats = {"seats": ["A1"]}
        self.call("POST", path, seats, expect=400, ptype="invalid-customer")
        self.call("POST", path, seats, {"X-Customer-Id": "has space"},
                  expect=400, ptype="invalid-customer")
        self.call("POST", path, seats, {"X-Customer-Id": "x" * 65},
                  expect=400, ptype="invalid-customer")
        cust = {"X-Customer-Id": customer()}
        for body, detail in ((b'{"seats": [', "line 1"),
                             (b"", "line 1"),
                             (b"[1]", "JSON object"),
                             (b'{"seats": [], "seats": []}', "duplicate")):
            with self.subTest(body=body):
                _, data = self.call("POST", path, body,
                                    {**cust, **JSON_TYPE}, expect=400,
                                    ptype="malformed-json")
                self.assertIn(detail, data["detail"])
        self.call("POST", path, json.dumps(seats), cust, expect=415,
                  ptype="unsupported-media-type")
        self.call("POST", path, json.dumps(seats),
                  {**cust, "Content-Type": "text/json"}, expect=415,
                  ptype="unsupported-media-type")
        for bad in ("has space", "k" * 129, "caf\u00e9".encode()):
            with self.subTest(key=bad):
                self.call("POST", path, seats,
                          {**cust, "Idempotency-Key": bad}, expect=400,
                          ptype="invalid-idempotency-key")
        # Refused by the HTTP layer: no instance, no X-Request-Id.
        got, data = self.call("POST", path, None,
                              {**cust, "Content-Length": "abc"}, expect=400,
                              ptype="bad-request")
        self.assertNotIn("x-request-id", got)
        self.assertNotIn("instance", data)
        # Not parsable at all: plain text.
        fields = "".join(f"X-Field-{i}: v\r\n" for i in range(120))
        status, got, raw = raw_exchange(
            self.svc, (f"POST {path} HTTP/1.1\r\nHost: x\r\n{fields}"
                       "Content-Length: 0\r\nConnection: close\r\n\r\n")
            .encode())
        self.checked("POST", path, status, got, raw, expect=400)
        self.assertTrue(got["content-type"].startswith("text/plain"))

    def test_not_found(self):
        self.create(0, ["A1"], expect=404, ptype="not-found")
        self.create(987654, ["A1"], expect=404, ptype="not-found")
        show = self.next_show()
        missing = f"{show}-0123456789abcdef"
        for method, path in (("GET", "/v1/holds/zz"),
                             ("GET", "/v1/holds/1-0123456789ABCDEF"),
                             ("GET", f"/v1/holds/{missing}"),
                             ("DELETE", f"/v1/holds/{missing}"),
                             ("DELETE", "/v1/holds/987654-0123456789abcdef"),
                             ("POST", f"/v1/holds/{missing}/extend"),
                             ("POST", "/v1/holds/zz/extend")):
            with self.subTest(method=method, path=path):
                self.call(method, path, headers={"X-Customer-Id": customer()},
                          expect=404, ptype="not-found")
        # Someone else's hold is not found either; no customer is a 400.
        _, h = self.create(show, seat_ids(self.seatmap(show), 0, 1),
                           expect=201)
        path = f"/v1/holds/{h['id']}"
        for method, url in (("GET", path), ("DELETE", path),
                            ("POST", f"{path}/extend")):
            with self.subTest(method=method, path=url, who="stranger"):
                self.call(method, url, headers={"X-Customer-Id": customer()},
                          expect=404, ptype="not-found")
            with self.subTest(method=method, path=url, who="nobody"):
                self.call(method, url, expect=400, ptype="invalid-customer")
        _, read = self.call("GET", path,
                            headers={"X-Customer-Id": h["customer_id"]},
                            expect=200)
        self.assertEqual(read, h)
        # No route at all: the same problem, checked against a 404 of the
        # description (a path it does not have has no operation).
        status, got, raw = self.svc.request("GET", "/v1/nope")
        self.checked("GET", "/v1/shows/{show_id}/seats", status, got, raw,
                     expect=404, ptype="not-found")

    # ------------------------------------------------------------ extend

    def test_extend_body_checks(self):
        show = self.next_show()
        m = self.seatmap(show)
        _, h = self.create(show, seat_ids(m, 0, 1), expect=201)
        path = f"/v1/holds/{h['id']}/extend"
        mine = {"X-Customer-Id": h["customer_id"]}
        _, data = self.call("POST", path, {"minutes": 5}, mine, expect=422,
                            ptype="validation-failed")
        self.assertEqual([(e["field"], e["code"]) for e in data["errors"]],
                         [("minutes", "unknown-field")])
        self.call("POST", path, b"{}", mine, expect=415,
                  ptype="unsupported-media-type")
        self.call("POST", path, b"[]", {**JSON_TYPE, **mine}, expect=400,
                  ptype="malformed-json")
        self.call("POST", path, headers={**mine, "Idempotency-Key": ""},
                  expect=400, ptype="invalid-idempotency-key")
        self.call("POST", path, expect=400, ptype="invalid-customer")
        self.call("POST", path, headers={"X-Customer-Id": "no spaces"},
                  expect=400, ptype="invalid-customer")
        # None of them extended the hold.
        _, read = self.call("GET", f"/v1/holds/{h['id']}", headers=mine,
                            expect=200)
        self.assertEqual(read["extensions"], 0)

    # ------------------------------------------------------------ idempotency

    def test_idempotent_create(self):
        show = self.next_show()
        m = self.seatmap(show)
        seats = seat_ids(m, 0, 2)
        req = hold_request(show, seats, customer(), key())
        got1, first = self.call(*req, expect=201)
        self.assertIn("location", got1)
        got2, second = self.replay(*req, expect=201)
        self.assertEqual(second, first)
        self.assertEqual(got2["location"], got1["location"])
        # The same key with another body.
        cust, k = req[3]["X-Customer-Id"], req[3]["Idempotency-Key"]
        self.call(*hold_request(show, seat_ids(m, 1, 1), cust, k),
                  expect=422, ptype="idempotency-key-reused")
        # Another customer's key of the same name is another key.
        self.call(*hold_request(show, seat_ids(m, 2, 1), customer(), k),
                  expect=201)

        # Refusals are replayed too, as they were, but with only type,
        # title, status and detail.
        req = hold_request(show, seats, customer(), key())
        _, refused = self.call(*req, expect=409, ptype="seats-taken")
        _, again = self.replay(*req, expect=409, ptype="seats-taken")
        self.assertEqual(again, {f: refused[f] for f in refused
                                 if f not in ("instance", "request_id")})
        req = hold_request(show, ["Z999"], customer(), key())
        self.call(*req, expect=422, ptype="validation-failed")
        self.replay(*req, expect=422, ptype="validation-failed")
        # A 404 is not stored: the same key asks again.
        req = hold_request(987655, ["A1"], customer(), key())
        self.call(*req, expect=404, ptype="not-found")
        got, _ = self.call(*req, expect=404, ptype="not-found")
        self.assertNotIn("idempotent-replayed", got)

    def test_idempotent_extend(self):
        show = self.next_show()
        m = self.seatmap(show)
        _, h = self.create(show, seat_ids(m, 0, 1), expect=201)
        time.sleep(0.01)  # an extension counts from now: let now move on
        path = f"/v1/holds/{h['id']}/extend"
        who, k = {"X-Customer-Id": h["customer_id"]}, key()
        req = ("POST", path, None, {**who, "Idempotency-Key": k})
        _, first = self.call(*req, expect=200)
        _, second = self.replay(*req, expect=200)
        self.assertEqual(second, first)
        self.assertEqual(first["extensions"], 1)
        # {} says what the empty body said: the same request, replayed.
        _, third = self.replay("POST", path, {}, {**who, "Idempotency-Key": k},
                               expect=200)
        self.assertEqual(third, first)
        # A refused extension is replayed as refused.
        req = ("POST", path, None, {**who, "Idempotency-Key": key()})
        self.call(*req, expect=409, ptype="extension-limit")
        self.replay(*req, expect=409, ptype="extension-limit")

    # ------------------------------------------------------------ events

    def test_show_events(self):
        path = "/internal/v1/show-events"
        show = self.next_show()
        _, body = self.call("POST", path,
                            {"type": "show.scheduled", "show_id": show},
                            expect=202)
        self.assertEqual(body, {"status": "accepted", "show_id": show})
        # A show the catalog lacks is accepted too; the fetch finds nothing.
        self.call("POST", path, {"type": "show.scheduled",
                                 "show_id": 987656, "version": 1},
                  expect=202)
        cases = [
            ({}, [("type", "required"), ("show_id", "required")]),
            ({"type": "", "show_id": 0},
             [("type", "too-short"), ("show_id", "out-of-range")]),
            ({"type": "x" * 41, "show_id": 1}, [("type", "too-long")]),
            ({"type": 5, "show_id": "1"},
             [("type", "wrong-type"), ("show_id", "wrong-type")]),
        ]
        for body, want in cases:
            with self.subTest(body=body):
                _, data = self.call("POST", path, body, expect=422,
                                    ptype="validation-failed")
                self.assertEqual([(e["field"], e["code"])
                                  for e in data["errors"]], want)
        self.call("POST", path, b'{"type":', JSON_TYPE, expect=400,
                  ptype="malformed-json")
        self.call("POST", path, b'{"type": "show.scheduled", "show_id": 1}',
                  expect=415, ptype="unsupported-media-type")

    # ------------------------------------------------------------ protocol

    def test_methods_not_allowed(self):
        hold = "/v1/holds/1-0123456789abcdef"
        for method, path, documented, allow in (
                ("GET", "/v1/shows/1/holds", "POST", "POST"),
                ("POST", "/v1/shows/1/seats", "GET", "GET"),
                ("PUT", hold, "GET", "GET, DELETE"),
                ("GET", f"{hold}/extend", "POST", "POST"),
                ("DELETE", f"{hold}/extend", "POST", "POST"),
                ("GET", "/internal/v1/show-events", "POST", "POST"),
                ("POST", "/healthz", "GET", "GET")):
            with self.subTest(method=method, path=path):
                got, _ = self.call(method, path, expect=405,
                                   ptype="method-not-allowed",
                                   documented_as=documented)
                self.assertEqual(got["allow"], allow)

    def test_payload_too_large(self):
        pad = "A" * (MAX_BODY_BYTES + 1000)
        for path in ("/v1/shows/1/holds",
                     "/v1/holds/1-0123456789abcdef/extend",
                     "/internal/v1/show-events"):
            with self.subTest(path=path):
                got, data = self.call(
                    "POST", path, {"seats": [pad]},
                    {"X-Customer-Id": customer()}, expect=413,
                    ptype="payload-too-large")
                self.assertNotIn("x-request-id", got)

    def test_headers_too_large(self):
        big = {"X-Pad": "y" * 20000}
        for method, path in (("GET", "/v1/shows/1/seats"),
                             ("POST", "/v1/shows/1/holds"),
                             ("GET", "/v1/holds/1-0123456789abcdef"),
                             ("DELETE", "/v1/holds/1-0123456789abcdef"),
                             ("POST", "/v1/holds/1-0123456789abcdef/extend"),
                             ("POST", "/internal/v1/show-events"),
                             ("GET", "/readyz")):
            with self.subTest(method=method, path=path):
                self.call(method, path, headers=big, expect=431,
                          ptype="headers-too-large")


class StallingCatalog:
    """A catalog that accepts connections and never answers them.

    While a booking service waits on it, the requests for a show it has
    not met stay in flight; release() closes those connections (the
    service then answers 503), close() stops listening (connections are
    refused)."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((HOST, 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.url = f"http://{HOST}:{self.sock.getsockname()[1]}"
        self.accepted = threading.Event()
        self.conns = []
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.conns.append(conn)
            self.accepted.set()

    def release(self):
        for conn in self.conns:
            conn.close()
        self.conns = []

    def close(self):
        self.stopping = True
        self.thread.join()
        self.sock.close()
        self.release()


class InFlightTest(ApiCase):
    """Answers that need a request in flight: 409 for a key still running,
    and 503 once the catalog turns out to be unreachable."""

    def background(self, results, method, path, body=None, headers=None):
        """Sends a request from a thread; appends (method, path, status,
        headers, body) to results once it is answered."""
        def run():
            results.append((method, path) +
                           self.svc.request(method, path, body, headers))
        thread = threading.Thread(target=run)
        thread.start()
        return thread

    def test_in_flight_then_unavailable(self):
        catalog = StallingCatalog()
        try:
            with Service("booking",
                         flags={"booking.catalog_url": catalog.url}) as svc:
                self.svc = svc
                self.stalled(catalog)
                # Nothing listens now: the fetch fails at once.
                catalog.close()
                self.unavailable_not_stored()
        finally:
            catalog.close()

    def stalled(self, catalog):
        show, hold = 1, "1-0123456789abcdef"
        create = ("POST", f"/v1/shows/{show}/holds", {"seats": ["A1"]},
                  {"X-Customer-Id": "c-flight",
                   "Idempotency-Key": "k-flight"})
        extend = ("POST", f"/v1/holds/{hold}/extend", None,
                  {"X-Customer-Id": "c-flight",
                   "Idempotency-Key": "k-extend"})
        first, rest = [], []
        threads = [self.background(first, *create)]
        self.assertTrue(catalog.accepted.wait(WAIT_S),
                        "the service did not ask the catalog")
        # The first request is waiting for the show, its key in flight.
        self.call(*create, expect=409, ptype="idempotency-key-in-flight")
        # An extension with a key, then the same again: one of the two
        # finds the other's key in flight.
        extends = []
        threads.append(self.background(extends, *extend))
        time.sleep(0.2)
        threads.append(self.background(extends, *extend))
        deadline = time.monotonic() + WAIT_S
        while not extends:
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.02)
        threads.append(self.background(rest, "GET", f"/v1/shows/{show}/seats"))
        threads.append(self.background(rest, "DELETE", f"/v1/holds/{hold}",
                                       headers={"X-Customer-Id": "c-flight"}))
        time.sleep(0.2)
        catalog.release()
        for thread in threads:
            thread.join(WAIT_S)
        self.assertEqual(len(first), 1)
        self.checked(*first[0], expect=503, ptype="unavailable")
        self.assertEqual(first[0][3]["retry-after"], "1")
        self.assertEqual(sorted(r[2] for r in extends), [409, 503])
        for answer in extends:
            self.checked(*answer, ptype=("idempotency-key-in-flight"
                                         if answer[2] == 409
                                         else "unavailable"))
        self.assertEqual(len(rest), 2)
        for answer in rest:
            self.checked(*answer, expect=503, ptype="unavailable")

    def unavailable_not_stored(self):
        # A 503 is not stored under its key: the same request runs again,
        # and is refused again (the catalog is gone), not replayed.
        got, data = self.call("POST", "/v1/shows/1/holds", {"seats": ["A1"]},
                              {"X-Customer-Id": "c-flight",
                               "Idempotency-Key": "k-flight"},
                              expect=503, ptype="unavailable")
        self.assertNotIn("idempotent-replayed", got)
        self.assertEqual(data["detail"], "the catalog could not be reached")
        self.call("GET", "/v1/shows/2/seats", expect=503, ptype="unavailable")


def tearDownModule():
    seen = sorted(set(CHECKED))
    print(f"\n{len(CHECKED)} answers checked against booking.yaml, "
          f"{len(seen)} kinds:", file=sys.stderr)
    for method, template, status, slug in seen:
        print(f"  {method:6} {template:32} {status} {slug}", file=sys.stderr)


if __name__ == "__main__":
    unittest.main()
