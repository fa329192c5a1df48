"""The booking service: seat maps, holds, expiry, idempotency, and the
no-oversell guarantee under real concurrency and crashes.

Each test class starts a real catalog with the demo data and one or two
real booking processes (the ASan build) that fetch shows from it.
"""

import json
import os
import random
import sqlite3
import threading
import time
import unittest
import uuid

from support import Service, free_port, repo_path, run_refused_start

DEMO = repo_path("data", "demo", "catalog.json")
TOKEN = "booking-test-token"


def customer():
    return "c-" + uuid.uuid4().hex[:12]


class Platform:
    """A catalog with demo data and booking instances sharing one DB."""

    def __init__(self, bookings=1, booking_flags=None, catalog_flags=None):
        flags = {"catalog.demo": "true", "catalog.demo_file": DEMO,
                 "catalog.admin_token": TOKEN}
        flags.update(catalog_flags or {})
        self.catalog = Service("catalog", flags=flags)
        self.bookings = []
        self.db = None
        try:
            for _ in range(bookings):
                bf = {"booking.catalog_url": self.catalog.url}
                if self.db is not None:
                    bf["store.path"] = self.db
                bf.update(booking_flags or {})
                svc = Service("booking", flags=bf)
                self.bookings.append(svc)
                self.db = self.db or svc.db_path
        except Exception:
            self.close()
            raise

    @property
    def booking(self):
        return self.bookings[0]

    def stop(self):
        """Stops every process (SIGTERM); the database stays for checks."""
        codes = []
        for svc in self.bookings + [self.catalog]:
            try:
                codes.append(svc.stop())
            except BaseException:
                svc.kill()
                raise
        return codes

    def cleanup(self):
        for svc in self.bookings + [self.catalog]:
            svc.close()

    def close(self):
        try:
            return self.stop()
        finally:
            self.cleanup()


def hold(svc, show, seats, cust=None, key=None, timeout=15):
    headers = {"X-Customer-Id": cust or customer()}
    if key:
        headers["Idempotency-Key"] = key
    return svc.json("POST", f"/v1/shows/{show}/holds", {"seats": seats},
                    headers, timeout=timeout)


def owner(h):
    """The headers that act for the customer who holds h."""
    return {"X-Customer-Id": h["customer_id"]}


def seat_ids(seatmap, row=0, count=None):
    r = seatmap["rows"][row]
    ids = [f"{r['label']}{n}" for n in r["seats"] if n is not None]
    return ids[:count] if count else ids


def live_holds(db_path):
    """{hold_id: [seat idx]} of holds that are active and unexpired."""
    now = int(time.time() * 1000)
    con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10)
    try:
        rows = con.execute(
            "SELECT id, show_id, seat_idx FROM holds WHERE status = 'active' "
            "AND expires_at > ?", (now,)).fetchall()
        seats = con.execute(
            "SELECT show_id, idx, hold_id FROM seats WHERE state = 1 "
            "AND expires_at > ?", (now,)).fetchall()
    finally:
        con.close()
    return ({r[0]: (r[1], json.loads(r[2])) for r in rows},
            {(s[0], s[1]): s[2] for s in seats})


class SeatMapAndHoldsTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.p = Platform(booking_flags={"booking.max_seats_per_customer": "4",
                                        "booking.max_extensions": "1"})
        cls.svc = cls.p.booking

    @classmethod
    def tearDownClass(cls):
        codes = cls.p.close()
        assert codes == [0, 0], codes

    def seatmap(self, show):
        status, headers, body = self.svc.json("GET", f"/v1/shows/{show}/seats")
        self.assertEqual(status, 200, body)
        return headers, body

    def test_seat_map_compact_with_etag(self):
        headers, m = self.seatmap(5)
        _, _, show = self.p.catalog.json("GET", "/v1/shows/5")
        layout = show["screen"]["layout"]
        self.assertEqual(m["counts"]["free"], show["screen"]["seat_count"])
        self.assertEqual(set(m["prices"]), {c["code"] for c in
                                            layout["categories"]})
        for row, lrow in zip(m["rows"], layout["rows"]):
            self.assertEqual(row["seats"], lrow["seats"])
            self.assertEqual(len(row["states"]), len(lrow["seats"]))
            self.assertEqual(set(row["states"]) - {"F", "."}, set())
        status, _, raw = self.svc.request(
            "GET", "/v1/shows/5/seats",
            headers={"If-None-Match": headers["etag"]})
        self.assertEqual((status, raw), (304, b""))
        # A hold changes the map, so the old ETag no longer matches.
        s, _, _ = hold(self.svc, 5, seat_ids(m, 0, 1))
        self.assertEqual(s, 201)
        status, _, _ = self.svc.request(
            "GET", "/v1/shows/5/seats",
            headers={"If-None-Match": headers["etag"]})
        self.assertEqual(status, 200)

    def test_hold_read_release(self):
        _, m = self.seatmap(6)
        seats = seat_ids(m, 1, 2)
        status, headers, h = hold(self.svc, 6, seats)
        self.assertEqual(status, 201, h)
        self.assertEqual(headers["location"], f"/v1/holds/{h['id']}")
        self.assertEqual([s["id"] for s in h["seats"]], seats)
        self.assertEqual(h["total"], sum(s["price"] for s in h["seats"]))
        self.assertEqual(h["status"], "active")
        self.assertEqual(h["currency"], "INR")
        _, m2 = self.seatmap(6)
        self.assertEqual(m2["rows"][1]["states"].count("H"), 2)
        self.assertEqual(m2["counts"]["held"], 2)

        status, _, again = self.svc.json("GET", f"/v1/holds/{h['id']}",
                                         headers=owner(h))
        self.assertEqual((status, again), (200, h))
        status, _, released = self.svc.json("DELETE", f"/v1/holds/{h['id']}",
                                            headers=owner(h))
        self.assertEqual(status, 200)
        self.assertEqual(released["status"], "released")
        _, m3 = self.seatmap(6)
        self.assertEqual(m3["counts"]["held"], 0)
        # Releasing twice answers the same.
        status, _, twice = self.svc.json("DELETE", f"/v1/holds/{h['id']}",
                                         headers=owner(h))
        self.assertEqual((status, twice["status"]), (200, "released"))

    def test_a_hold_answers_only_its_customer(self):
        _, m = self.seatmap(6)
        status, _, h = hold(self.svc, 6, seat_ids(m, 3, 2))
        self.assertEqual(status, 201, h)
        path = f"/v1/holds/{h['id']}"
        stranger = {"X-Customer-Id": customer()}
        # Another customer is told exactly what a missing hold tells.
        for method, url in (("GET", path), ("DELETE", path),
                            ("POST", path + "/extend")):
            status, headers, body = self.svc.json(method, url,
                                                  headers=stranger)
            self.assertEqual((status, body["type"]),
                             (404, "/problems/not-found"), (method, body))
            self.assertEqual(headers["content-type"],
                             "application/problem+json")
            self.assertNotIn(h["customer_id"], json.dumps(body))
        # Without a customer, or with a malformed one: 400, before any look.
        for who in ({}, {"X-Customer-Id": "bad id\u00e9"}):
            for method, url in (("GET", path), ("DELETE", path),
                                ("POST", path + "/extend")):
                status, _, body = self.svc.json(method, url, headers=who)
                self.assertEqual((status, body["type"]),
                                 (400, "/problems/invalid-customer"),
                                 (method, who, body))
        # Nothing changed: still active, seats still held, no extension.
        status, _, now = self.svc.json("GET", path, headers=owner(h))
        self.assertEqual((status, now), (200, h))
        _, m2 = self.seatmap(6)
        self.assertEqual(m2["rows"][3]["states"].count("H"), 2)
        # The owner still can.
        status, _, ext = self.svc.json("POST", path + "/extend",
                                       headers=owner(h))
        self.assertEqual((status, ext["extensions"]), (200, 1), ext)
        status, _, gone = self.svc.json("DELETE", path, headers=owner(h))
        self.assertEqual((status, gone["status"]), (200, "released"))

    def test_conflict_names_the_seats_gone(self):
        _, m = self.seatmap(7)
        a, b, c = seat_ids(m, 2, 3)
        self.assertEqual(hold(self.svc, 7, [a, b])[0], 201)
        status, headers, body = hold(self.svc, 7, [b, c])
        self.assertEqual(status, 409)
        self.assertEqual(headers["content-type"], "application/problem+json")
        self.assertEqual(body["type"], "/problems/seats-taken")
        self.assertEqual(body["seats"], [b])
        # All or nothing: c was not taken by the refused hold.
        self.assertEqual(hold(self.svc, 7, [c])[0], 201)

    def test_bad_input_each_gets_a_problem(self):
        _, m = self.seatmap(8)
        a, b = seat_ids(m, 0, 2)
        cases = [
            (hold(self.svc, 999999, [a]), 404, "not-found", None),
            (hold(self.svc, 8, ["Z999"]), 422, "validation-failed",
             "unknown-seat"),
            (hold(self.svc, 8, [a, a]), 422, "validation-failed",
             "duplicate-seat"),
            (hold(self.svc, 8, []), 422, "validation-failed", "empty"),
            (hold(self.svc, 8, seat_ids(m, 3)[:11]), 422,
             "validation-failed", "too-many-seats"),
        ]
        for (status, headers, body), want, slug, code in cases:
            self.assertEqual(status, want, body)
            self.assertEqual(body["type"], f"/problems/{slug}")
            if code:
                self.assertIn(code, [e["code"] for e in body["errors"]])
        status, _, body = self.svc.json(
            "POST", "/v1/shows/8/holds", b'{"seats": [', {
                "X-Customer-Id": "x", "Content-Type": "application/json"})
        self.assertEqual((status, body["type"]),
                         (400, "/problems/malformed-json"))
        status, _, body = self.svc.json("POST", "/v1/shows/8/holds",
                                        {"seats": [a]})
        self.assertEqual((status, body["type"]),
                         (400, "/problems/invalid-customer"))
        status, _, body = self.svc.json("POST", "/v1/shows/8/holds",
                                        {"seats": [a], "extra": 1},
                                        {"X-Customer-Id": "x"})
        self.assertEqual(status, 422)
        # Nothing was half-written by any of them.
        _, m2 = self.seatmap(8)
        self.assertEqual(m2["counts"]["held"], 0)
        self.assertEqual(self.svc.json("GET", "/v1/holds/1-zz",
                                       headers={"X-Customer-Id": "x"})[0],
                         404)

    def test_customer_limit_per_show(self):
        _, m = self.seatmap(9)
        who = customer()
        seats = seat_ids(m, 4)
        self.assertEqual(hold(self.svc, 9, seats[0:2], who)[0], 201)
        self.assertEqual(hold(self.svc, 9, seats[2:4], who)[0], 201)
        status, _, body = hold(self.svc, 9, seats[4:5], who)
        self.assertEqual((status, body["type"]),
                         (409, "/problems/customer-limit"))
        # Another customer is not limited by the first one's seats.
        self.assertEqual(hold(self.svc, 9, seats[4:5])[0], 201)

    def test_extension_cap(self):
        _, m = self.seatmap(10)
        status, _, h = hold(self.svc, 10, seat_ids(m, 0, 1))
        self.assertEqual(status, 201)
        # Renewal counts from now: in the millisecond of its creation the
        # hold already has its whole time ahead and there is nothing to gain.
        time.sleep(0.05)
        status, _, ext = self.svc.json("POST", f"/v1/holds/{h['id']}/extend",
                                       headers=owner(h))
        self.assertEqual(status, 200, ext)
        self.assertEqual(ext["extensions"], 1)
        self.assertGreaterEqual(ext["expires_at"], h["expires_at"])
        self.assertLessEqual(ext["expires_at"], h["max_expires_at"])
        status, _, body = self.svc.json("POST", f"/v1/holds/{h['id']}/extend",
                                        headers=owner(h))
        self.assertEqual((status, body["type"]),
                         (409, "/problems/extension-limit"))

    def test_idempotency_replay_and_reuse(self):
        _, m = self.seatmap(11)
        who, key = customer(), "key-" + uuid.uuid4().hex
        seats = seat_ids(m, 0, 2)
        s1, h1, first = hold(self.svc, 11, seats, who, key)
        s2, h2, second = hold(self.svc, 11, seats, who, key)
        self.assertEqual((s1, s2), (201, 201))
        self.assertEqual(first, second)
        self.assertEqual(h2.get("idempotent-replayed"), "true")
        status, _, body = hold(self.svc, 11, seat_ids(m, 1, 2), who, key)
        self.assertEqual((status, body["type"]),
                         (422, "/problems/idempotency-key-reused"))
        # Another customer's identical key is another key.
        status, _, other = hold(self.svc, 11, seat_ids(m, 2, 1), customer(),
                                key)
        self.assertEqual(status, 201)
        # A refused request replays as refused, even once seats free up.
        key2 = "key-" + uuid.uuid4().hex
        status, _, refused = hold(self.svc, 11, seats, who, key2)
        self.assertEqual(status, 409)
        self.assertEqual(self.svc.json("DELETE", f"/v1/holds/{first['id']}",
                                       headers=owner(first))[0], 200)
        time.sleep(0.3)
        status, _, again = hold(self.svc, 11, seats, who, key2)
        self.assertEqual((status, again["type"]),
                         (409, "/problems/seats-taken"))

    def test_repeat_right_after_the_answer_is_replayed(self):
        # A client that repeats a request as soon as it has the answer gets
        # the answer again: the key must not look in flight any more.  Four
        # threads each hold, repeat at once and release, so the repeat often
        # reaches the other HTTP thread while the first is still answering.
        _, m = self.seatmap(12)
        wrong = []

        def client(seat):
            for _ in range(40):
                who, key = customer(), "key-" + uuid.uuid4().hex
                s1, _, first = hold(self.svc, 12, [seat], who, key)
                s2, h2, _ = hold(self.svc, 12, [seat], who, key)
                if s1 != 201 or s2 != 201 or \
                        h2.get("idempotent-replayed") != "true":
                    wrong.append((s1, s2, h2.get("idempotent-replayed")))
                if s1 == 201:
                    self.svc.json("DELETE", f"/v1/holds/{first['id']}",
                                  headers=owner(first))

        threads = [threading.Thread(target=client, args=(seat,))
                   for seat in seat_ids(m, 3, 4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(wrong, [])

    def test_idempotency_in_flight(self):
        _, m = self.seatmap(12)
        who, key = customer(), "race-" + uuid.uuid4().hex
        seats = seat_ids(m, 0, 2)
        results = []

        def go():
            results.append(hold(self.svc, 12, seats, who, key))

        threads = [threading.Thread(target=go) for _ in range(24)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        statuses = sorted(r[0] for r in results)
        self.assertTrue(set(statuses) <= {201, 409}, statuses)
        ids = {r[2]["id"] for r in results if r[0] == 201}
        self.assertEqual(len(ids), 1, "one hold, replayed")
        for status, _, body in results:
            if status == 409:
                self.assertEqual(body["type"],
                                 "/problems/idempotency-key-in-flight")

    def test_show_is_learned_from_the_catalog_on_demand(self):
        # Show 20 was never asked for before: booking fetches it.
        self.assertNotIn("show=20 ", self.svc.log())
        _, m = self.seatmap(20)
        self.assertTrue(m["rows"])
        self.assertEqual(self.svc.json("GET", "/v1/shows/987654/seats")[0],
                         404)


def future(days, hour=23, minute=0):
    import datetime
    d = datetime.datetime.now(datetime.timezone.utc).date()
    t = datetime.datetime.combine(d + datetime.timedelta(days=days),
                                  datetime.time(hour, minute),
                                  tzinfo=datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


class CatalogLinkTest(unittest.TestCase):
    """Shows announced by the catalog, and the per-show no-orphan rule."""

    @classmethod
    def setUpClass(cls):
        cls.p = Platform()
        # The catalog learns booking's address once booking has one.
        cls.p.catalog.stop()
        cls.p.catalog.args.append(
            f"--catalog.notify_urls={cls.p.booking.url}")
        cls.p.catalog.start()

    @classmethod
    def tearDownClass(cls):
        codes = cls.p.close()
        assert codes == [0, 0], codes

    def new_show(self, day, **extra):
        body = {"movie_id": 1, "screen_id": 3, "starts_at": future(day),
                "prices": {"classic": 18000, "prime": 25000}}
        body.update(extra)
        status, _, show = self.p.catalog.json(
            "POST", "/v1/admin/shows", body,
            {"Authorization": f"Bearer {TOKEN}"})
        self.assertEqual(status, 201, show)
        return show

    def wait_for_log(self, text, timeout=10):
        deadline = time.monotonic() + timeout
        while text not in self.p.booking.log():
            self.assertLess(time.monotonic(), deadline, f"no {text!r}")
            time.sleep(0.05)

    def test_scheduled_show_is_installed_from_the_event(self):
        show = self.new_show(20)
        # Nobody asked booking for it: the event made booking fetch it.
        self.wait_for_log(f"show_installed show={show['id']} ")
        _, _, m = self.p.booking.json("GET",
                                      f"/v1/shows/{show['id']}/seats")
        self.assertEqual(m["status"], "open")
        status, _, _ = self.p.catalog.json(
            "POST", f"/v1/admin/shows/{show['id']}/cancel", {},
            {"Authorization": f"Bearer {TOKEN}"})
        self.assertEqual(status, 200)
        deadline = time.monotonic() + 10
        while True:
            status, _, body = hold(self.p.booking, show["id"],
                                   seat_ids(m, 0, 1))
            if status == 409 and body["type"] == "/problems/show-closed":
                break
            self.assertLess(time.monotonic(), deadline, body)
            if status == 201:
                self.p.booking.json("DELETE", f"/v1/holds/{body['id']}",
                                    headers=owner(body))
            time.sleep(0.1)
        _, _, m2 = self.p.booking.json("GET",
                                       f"/v1/shows/{show['id']}/seats")
        self.assertEqual(m2["status"], "cancelled")

    def test_no_orphan_seat_rule(self):
        show = self.new_show(21, no_orphan_seats=True)
        _, _, m = self.p.booking.json("GET", f"/v1/shows/{show['id']}/seats")
        row = seat_ids(m, 0)  # studio row A: blocks of 3, 8 and 3 seats
        a1, a2, a3, a4, a5, a6 = row[0:6]
        # A2 alone would strand A1 and A3, each against an aisle.
        status, _, body = hold(self.p.booking, show["id"], [a2])
        self.assertEqual((status, body["type"]), (409, "/problems/orphan-seat"))
        self.assertEqual(body["seats"], [a1, a3])
        # In the block of eight (A4..A11), A5 alone would strand A4.
        status, _, body = hold(self.p.booking, show["id"], [a5])
        self.assertEqual(body["seats"], [a4])
        # A4 and A5 together strand nothing; then A6 is fine too.
        self.assertEqual(hold(self.p.booking, show["id"], [a4, a5])[0], 201)
        self.assertEqual(hold(self.p.booking, show["id"], [a6])[0], 201)
        # A show without the rule allows the same hold.
        plain = self.new_show(22)
        _, _, m = self.p.booking.json("GET",
                                      f"/v1/shows/{plain['id']}/seats")
        self.assertEqual(hold(self.p.booking, plain["id"],
                              [seat_ids(m, 0)[4]])[0], 201)


class CatalogFailoverTest(unittest.TestCase):
    """booking.catalog_url lists several catalog instances: a show is
    fetched from the next one when an instance is down, and the one that
    answered is asked first next time."""

    def test_shows_come_from_the_instance_that_answers(self):
        flags = {"catalog.demo": "true", "catalog.demo_file": DEMO,
                 "catalog.admin_token": TOKEN}
        dead = f"http://127.0.0.1:{free_port()}"
        # Killed during the test, so not context managers (which expect a
        # clean exit): closed at the end instead.
        one = Service("catalog", flags=flags)
        self.addCleanup(one.close)
        two = Service("catalog", flags=flags)
        self.addCleanup(two.close)
        urls = f"{dead},{one.url},{two.url}"
        with Service("booking", flags={"booking.catalog_url": urls}) as svc:
            # The first instance refuses the connection: the second answers.
            self.assertEqual(svc.json("GET", "/v1/shows/20/seats")[0], 200)
            self.assertEqual(
                svc.log().count(f'catalog_failover from="{dead}"'), 1)
            # The second answered, so it is asked first: no failover.
            self.assertEqual(svc.json("GET", "/v1/shows/21/seats")[0], 200)
            self.assertEqual(svc.log().count("catalog_failover"), 1)
            # It dies: the third answers, and the dead first is passed by.
            one.kill()
            self.assertEqual(svc.json("GET", "/v1/shows/22/seats")[0], 200)
            self.assertEqual(
                svc.log().count(f'catalog_failover from="{one.url}"'), 1)
            self.assertEqual(
                svc.log().count(f'catalog_failover from="{dead}"'), 1)
            # A show that no instance has is still a 404, not a 5xx.
            self.assertEqual(
                svc.json("GET", "/v1/shows/987654/seats")[0], 404)
            # Every instance down: a new show cannot be learned (503), and
            # the seats of shows already known are still served.
            two.kill()
            self.assertEqual(svc.json("GET", "/v1/shows/23/seats")[0], 503)
            self.assertEqual(svc.json("GET", "/v1/shows/20/seats")[0], 200)

    def test_bad_lists_stop_the_start(self):
        too_many = ",".join(f"http://127.0.0.1:{9000 + i}" for i in range(9))
        for bad in ("", ",", "http://127.0.0.1:1,,http://127.0.0.1:2",
                    "http://127.0.0.1:1,ftp://127.0.0.1:2",
                    "http://127.0.0.1:1," + "x" * 200, too_many):
            proc = run_refused_start("booking",
                                     {"booking.catalog_url": bad})
            self.assertNotEqual(proc.returncode, 0, bad)
            self.assertIn(b"bad_value key=booking.catalog_url", proc.stderr,
                          bad)


class ExpiryTest(unittest.TestCase):

    def test_holds_expire_and_seats_come_back(self):
        p = Platform(booking_flags={"booking.max_hold_life_s": "2",
                                    "booking.sweep_ms": "100"})
        try:
            svc = p.booking
            _, _, m = svc.json("GET", "/v1/shows/3/seats")
            seats = seat_ids(m, 0, 2)
            status, _, h = hold(svc, 3, seats)
            self.assertEqual(status, 201)
            self.assertEqual(hold(svc, 3, seats)[0], 409)
            time.sleep(2.5)
            status, _, again = svc.json("GET", f"/v1/holds/{h['id']}",
                                        headers=owner(h))
            self.assertEqual(again["status"], "expired")
            _, _, m2 = svc.json("GET", "/v1/shows/3/seats")
            self.assertEqual(m2["counts"]["held"], 0)
            status, _, h2 = hold(svc, 3, seats)
            self.assertEqual(status, 201, h2)
            status, _, ext = svc.json("POST", f"/v1/holds/{h['id']}/extend",
                                      headers=owner(h))
            self.assertEqual((status, ext["type"]),
                             (409, "/problems/hold-not-active"))
            # Max life 2 s: no extension can go past it.
            status, _, ext = svc.json("POST", f"/v1/holds/{h2['id']}/extend",
                                      headers=owner(h2))
            self.assertEqual((status, ext["type"]),
                             (409, "/problems/extension-limit"))
            con = sqlite3.connect(p.db)
            row = con.execute("SELECT status FROM holds WHERE id = ?",
                              (h["id"],)).fetchone()
            con.close()
            self.assertEqual(row[0], "expired")
        finally:
            self.assertEqual(p.close(), [0, 0])

    def test_expired_hold_is_free_with_no_sweeper(self):
        """The database's own test for a free seat counts an expired hold
        as free: with the sweepers a minute away, a second process whose
        memory never saw the hold takes the seats the moment it ends."""
        p = Platform(bookings=2,
                     booking_flags={"booking.max_hold_life_s": "2",
                                    "booking.sweep_ms": "60000"})
        try:
            a, b = p.bookings
            _, _, m = a.json("GET", "/v1/shows/3/seats")
            b.json("GET", "/v1/shows/3/seats")  # b's memory: all free
            seats = seat_ids(m, 1, 3)
            status, _, first = hold(a, 3, seats)
            self.assertEqual(status, 201, first)
            # Before the deadline the database refuses b, whatever b thinks.
            status, _, body = hold(b, 3, seats)
            self.assertEqual((status, body["type"]),
                             (409, "/problems/seats-taken"))
            time.sleep(2.3)
            # b reloaded the seats it lost, and the hold is now past its
            # deadline: both b's memory and the database say free.
            status, _, second = hold(b, 3, seats)
            self.assertEqual(status, 201, second)
            # a never swept: its memory reads the deadline too.
            status, _, body = hold(a, 3, seats)
            self.assertEqual((status, body["type"]),
                             (409, "/problems/seats-taken"))
            self.assertNotIn("booking: sweep ", a.log() + b.log())
            holds, taken = live_holds(p.db)
            self.assertEqual(set(holds), {second["id"]})
            self.assertEqual(set(taken.values()), {second["id"]})
        finally:
            self.assertEqual(p.close(), [0, 0, 0])


class NoOversellTest(unittest.TestCase):
    """64 clients, two booking processes, one database, the same seats."""

    CLIENTS = 64
    ROUNDS = 50  # 64 x 50 = 3,200 contested holds

    def test_two_processes_never_sell_a_seat_twice(self):
        p = Platform(bookings=2,
                     booking_flags={"booking.max_seats_per_customer": "100"})
        acks = []
        errors = []
        try:
            _, _, m = p.booking.json("GET", "/v1/shows/2/seats")
            p.bookings[1].json("GET", "/v1/shows/2/seats")
            pool = seat_ids(m, 0)[:12]
            lock = threading.Lock()

            def client(n):
                rng = random.Random(n)
                svc = p.bookings[n % 2]
                mine = []
                for _ in range(self.ROUNDS):
                    i = rng.randrange(len(pool) - 1)
                    try:
                        status, _, body = hold(svc, 2, pool[i:i + 2])
                    except OSError as e:
                        errors.append(repr(e))
                        continue
                    if status == 201:
                        with lock:
                            acks.append(body)
                        mine.append(body)
                    elif status not in (409, 503):
                        errors.append(f"{status} {body}")
                    if mine and rng.random() < 0.5:
                        gone = mine.pop()
                        status, _, body = svc.json(
                            "DELETE", f"/v1/holds/{gone['id']}",
                            headers=owner(gone))
                        if status not in (200, 503):
                            errors.append(f"release {status} {body}")

            threads = [threading.Thread(target=client, args=(n,))
                       for n in range(self.CLIENTS)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            codes = p.stop()
            self.check_database(p, codes, acks, errors)
        finally:
            p.cleanup()

    def check_database(self, p, codes, acks, errors):
        self.assertEqual(codes, [0, 0, 0])
        self.assertEqual(errors, [])
        self.assertGreater(len(acks), 20)
        holds, seats = live_holds(p.db)
        # I1: no seat in two live holds, and the seat rows agree.
        taken = {}
        for hid, (show, idxs) in holds.items():
            for i in idxs:
                self.assertNotIn((show, i), taken, "seat held twice")
                taken[(show, i)] = hid
        self.assertEqual(taken, seats)
        # Every acknowledged hold is in the database.
        con = sqlite3.connect(p.db)
        known = {r[0] for r in con.execute("SELECT id FROM holds")}
        con.close()
        missing = [a["id"] for a in acks if a["id"] not in known]
        self.assertEqual(missing, [])



class OptimisticGuardTest(unittest.TestCase):

    def test_the_database_refuses_what_a_stale_process_allows(self):
        """Two processes that both believe they own a show: the second's
        memory says the seat is free, the database says no."""
        p = Platform(bookings=2)
        try:
            a, b = p.bookings
            _, _, m = a.json("GET", "/v1/shows/2/seats")
            b.json("GET", "/v1/shows/2/seats")  # both have it in memory
            seat = seat_ids(m, 0, 1)
            status, _, first = hold(a, 2, seat)
            self.assertEqual(status, 201)
            status, _, body = hold(b, 2, seat)
            self.assertEqual((status, body["type"]),
                             (409, "/problems/seats-taken"))
            self.assertEqual(body["seats"], seat)
            self.assertIn("hold_refused_by_database", b.log())
            # b learned it: the next try is refused from memory.
            _, _, mb = b.json("GET", "/v1/shows/2/seats")
            self.assertEqual(mb["rows"][0]["states"][0], "H")
            self.assertEqual(p.stop(), [0, 0, 0])
        finally:
            p.cleanup()


class ReplayAfterRestartTest(unittest.TestCase):

    def test_stored_answers_replay_after_a_restart(self):
        p = Platform()
        try:
            svc = p.booking
            _, _, m = svc.json("GET", "/v1/shows/5/seats")
            who, key = customer(), "restart-" + uuid.uuid4().hex
            status, _, first = hold(svc, 5, seat_ids(m, 0, 2), who, key)
            self.assertEqual(status, 201)
            svc.kill()  # no clean stop: the answer must be on disk
            svc.start()
            self.assertIn("idempotency_keys_loaded keys=1", svc.log())
            status, headers, again = hold(svc, 5, seat_ids(m, 0, 2), who, key)
            self.assertEqual((status, again), (201, first))
            self.assertEqual(headers.get("idempotent-replayed"), "true")
            self.assertEqual(p.stop(), [0, 0])
        finally:
            p.cleanup()


class CrashTest(unittest.TestCase):

    def test_kill_9_during_a_burst_loses_no_acknowledged_hold(self):
        p = Platform()
        svc = p.booking
        acks, stop = [], threading.Event()
        try:
            _, _, m = svc.json("GET", "/v1/shows/4/seats")
            rows = [seat_ids(m, r) for r in range(len(m["rows"]))]
            pairs = [row[i:i + 2] for row in rows
                     for i in range(0, len(row) - 1, 2)]

            def client(n):
                for k in range(n, len(pairs), 16):
                    if stop.is_set():
                        return
                    try:
                        status, _, body = hold(svc, 4, pairs[k], timeout=5)
                    except OSError:
                        return
                    if status == 201:
                        acks.append(body)

            threads = [threading.Thread(target=client, args=(n,))
                       for n in range(16)]
            for t in threads:
                t.start()
            time.sleep(1.0)
            svc.kill()
            stop.set()
            for t in threads:
                t.join()
            self.assertGreater(len(acks), 5)
            svc.start()
            for a in acks:
                status, _, h = svc.json("GET", f"/v1/holds/{a['id']}",
                                        headers=owner(a))
                self.assertEqual(status, 200, a["id"])
                self.assertEqual(h["status"], "active")
            _, _, m2 = svc.json("GET", "/v1/shows/4/seats")
            self.assertGreaterEqual(m2["counts"]["held"], 2 * len(acks))
            # The seats of acknowledged holds cannot be held again.
            status, _, body = hold(svc, 4, [acks[0]["seats"][0]["id"]])
            self.assertEqual(status, 409, body)
            self.assertEqual(p.stop(), [0, 0])
            holds, seats = live_holds(p.db)
            taken = {}
            for hid, (show, idxs) in holds.items():
                for i in idxs:
                    self.assertNotIn((show, i), taken)
                    taken[(show, i)] = hid
            self.assertEqual(taken, seats)
            self.assertTrue({a["id"] for a in acks} <= set(holds))
        finally:
            p.cleanup()


if __name__ == "__main__":
    unittest.main()
