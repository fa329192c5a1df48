"""Checkout: a hold paid for through the payment service becomes a booking.

Real processes: a catalog, a payment service (its simulated provider
dialled per test) and a booking, sharing a SQLite queue file.  The tests
check the booking and its event, declines and retries, replays that never
charge twice, payment outages (503, hold kept), a payment that lands after
its hold expired (refunded, 409), and SIGKILL of booking while a charge is
in flight (the reconciler leaves a booking or a refund, never neither).
Every money claim is checked in payment's own database as well, and
after every kill `marquee check` must find the databases clean.
"""

import datetime
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import threading
import time
import unittest
import uuid

from support import SANITIZER_ENV, ApiSchema, Service, marquee_bin

TOKEN = "checkout-test-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
PRICE = 25000
# Steps take milliseconds; the slack is for a loaded machine and ASan.
WAIT_S = 20.0
# One run of `marquee check` over small databases takes well under a second.
CHECK_TIMEOUT_S = 60
DIALS = {"latency_ms": 5, "jitter_ms": 0, "failure_rate": 0.0,
         "decline_rate": 0.0, "timeout_rate": 0.0, "outage": False}

PAYMENT_FLAGS = {"payment.admin_token": TOKEN,
                 "payment.provider.latency_ms": "5",
                 "payment.provider.jitter_ms": "0",
                 "payment.provider_timeout_ms": "4000",
                 "http.threads": "2"}

LAYOUT = {
    "categories": [{"code": "classic", "name": "Classic"}],
    "rows": [{"label": "A", "category": "classic",
              "seats": [1, 2, 3, 4, 5, 6, 7, 8]},
             {"label": "B", "category": "classic",
              "seats": [1, 2, 3, 4, 5, 6, 7, 8]}],
}


def api():
    return ApiSchema.for_file("booking.yaml")


def key():
    return "k-" + uuid.uuid4().hex


def future(days, minutes=0):
    t = (datetime.datetime.now(datetime.timezone.utc)
         + datetime.timedelta(days=days, minutes=minutes))
    return t.replace(second=0, microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def wait_until(what, check, timeout=WAIT_S, interval=0.05):
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        time.sleep(interval)


def query(path, sql, args=()):
    con = sqlite3.connect(path, timeout=10)
    try:
        with con:
            return con.execute(sql, args).fetchall()
    finally:
        con.close()


def run_check(booking_db, payment_db, notify_db=None):
    """Runs `marquee check --json` on the databases as they are, with its
    default grace (work in flight is pending, not a violation).
    Returns (exit code, findings, summary, stdout + stderr)."""
    args = [marquee_bin(), "check", f"--booking.db={booking_db}",
            f"--payment.db={payment_db}", "--json"]
    if notify_db:
        args.append(f"--notify.db={notify_db}")
    env = dict(os.environ)
    for k, v in SANITIZER_ENV.items():
        env.setdefault(k, v)
    proc = subprocess.run(args, capture_output=True, text=True, env=env,
                          timeout=CHECK_TIMEOUT_S)
    shown = f"exit {proc.returncode}\n{proc.stdout}{proc.stderr}"
    for mark in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
        assert mark not in proc.stderr, shown
    findings, summary = [], None
    for line in proc.stdout.splitlines():
        obj = json.loads(line)
        if "summary" in obj:
            summary = obj["summary"]
        elif "invariant" in obj:
            findings.append(obj)
    return proc.returncode, findings, summary, shown


def pending_total(summary):
    return sum(n for n in summary["pending"].values() if n is not None)


def wait_checked_clean(booking_db, payment_db, notify_db=None):
    """Runs the checker until it reports nothing pending (bounded by
    WAIT_S): a repair still in flight is pending, and must end.  Any
    violation at any point fails at once.  Returns the last summary."""
    last = {}

    def clean():
        code, findings, summary, shown = run_check(booking_db, payment_db,
                                                   notify_db)
        last["shown"] = shown
        assert summary is not None, f"no summary line:\n{shown}"
        violations = [f for f in findings if f["status"] == "violation"]
        assert code == 0 and summary["violations_total"] == 0 \
            and not violations, f"marquee check found violations:\n{shown}"
        return summary if pending_total(summary) == 0 else None
    try:
        return wait_until("marquee check reports nothing pending", clean,
                          interval=0.2)
    except AssertionError as e:
        if "violations" in str(e):
            raise
        raise AssertionError(f"{e}; last run:\n{last.get('shown')}")


class Platform:
    """A catalog, a payment and a booking sharing one queue file."""

    def __init__(self, booking_flags=None):
        self.tmp = tempfile.mkdtemp(prefix="marquee-checkout-")
        self.queue = os.path.join(self.tmp, "queue.db")
        self.services = []
        try:
            self.catalog = self._add(Service("catalog", flags={
                "catalog.admin_token": TOKEN, "mq.path": self.queue}))
            self.payment = self._add(Service("payment",
                                             flags=PAYMENT_FLAGS))
            flags = {"booking.catalog_url": self.catalog.url,
                     "booking.payment_url": self.payment.url,
                     "mq.path": self.queue,
                     "http.threads": "2",
                     "booking.payment_timeout_ms": "2500",
                     "booking.reconcile_after_ms": "3500",
                     "booking.reconcile_interval_ms": "200",
                     "booking.refund_retry_ms": "100",
                     "booking.payment_breaker_open_ms": "1000"}
            flags.update(booking_flags or {})
            self.booking = self._add(Service("booking", flags=flags))
            self.world()
        except BaseException:
            self.close()
            raise
        self.slot = 0

    def _add(self, svc):
        self.services.append(svc)
        return svc

    def close(self, check=True):
        codes = []
        try:
            for svc in reversed(self.services):
                if svc.proc is not None:
                    codes.append((svc.role, svc.stop()))
        finally:
            for svc in self.services:
                svc.close()
            shutil.rmtree(self.tmp, ignore_errors=True)
        if check:
            for role, code in codes:
                assert code == 0, f"{role} exited with {code}"

    def admin(self, path, body=None, expect=201, method="POST"):
        status, _, data = self.catalog.json(method, path, body or {}, ADMIN)
        assert status == expect, f"{method} {path}: {status} {data}"
        return data

    def world(self):
        city = self.admin("/v1/admin/cities", {
            "name": "Paytown", "slug": "paytown-" + uuid.uuid4().hex[:6],
            "utc_offset_minutes": 330, "currency": "INR"})
        cinema = self.admin("/v1/admin/cinemas", {
            "city_id": city["id"], "name": "Ledger Talkies",
            "address": "1 Till Road"})
        self.screen = self.admin(
            f"/v1/admin/cinemas/{cinema['id']}/screens",
            {"name": "Screen 1", "layout": LAYOUT})
        self.movie = self.admin("/v1/admin/movies", {
            "title": "The Checkout", "language": "Tamil",
            "genres": ["drama"], "duration_minutes": 90, "certificate": "U",
            "release_date": "2026-11-01"})

    def new_show(self, starts_at=None, cancellation=None):
        """A show in a slot of its own (no overlap with the others)."""
        self.slot += 1
        body = {"movie_id": self.movie["id"],
                "screen_id": self.screen["id"],
                "starts_at": starts_at or future(3 + self.slot, 0),
                "prices": {"classic": PRICE}}
        if cancellation is not None:
            body["cancellation"] = cancellation
        return self.admin("/v1/admin/shows", body)

    def dials(self, **changes):
        status, _, data = self.payment.json(
            "PUT", "/admin/provider", dict(DIALS, **changes), ADMIN)
        assert status == 200, (status, data)

    def charges_of(self, hold_id):
        """Payment's own rows for the hold's attempts."""
        return query(self.payment.db_path,
                     "SELECT id, status, amount, refunded FROM charges "
                     "WHERE reference LIKE ? ORDER BY created_at, id",
                     (hold_id + ".%",))

    def events(self, topic=None):
        rows = query(self.queue,
                     "SELECT id, topic, body FROM mq_messages "
                     "WHERE queue = 'notify.bookings' ORDER BY tag")
        # The queue keeps bodies as hex of their bytes.
        return [(r[0], r[1], bytes.fromhex(r[2]).decode()) for r in rows
                if topic is None or r[1] == topic]


class CheckoutCase(unittest.TestCase):
    """Requests checked against booking.yaml."""

    platform = None

    @property
    def booking(self):
        return self.platform.booking

    def call(self, method, path, body=None, headers=None, expect=None,
             ptype=None, svc=None):
        svc = svc or self.booking
        status, got, raw = svc.request(method, path, body, headers)
        data = api().check(method, path.split("?")[0], status, got, raw)
        where = f"{method} {path} -> {status}: {raw[:600]!r}"
        if expect is not None:
            self.assertEqual(status, expect, where)
        if status >= 400 and isinstance(data, dict):
            self.assertEqual(got.get("content-type"),
                             "application/problem+json", where)
            if ptype is not None:
                self.assertEqual(data["type"], f"/problems/{ptype}", where)
        return got, data

    def hold(self, show, seats, customer="cust-1"):
        return self.call("POST", f"/v1/shows/{show['id']}/holds",
                         {"seats": seats},
                         {"X-Customer-Id": customer,
                          "Idempotency-Key": key()}, 201)[1]

    def checkout(self, hold, idem=None, token="tok_visa", customer="cust-1",
                 expect=None, ptype=None):
        headers = {"X-Customer-Id": customer}
        if idem is not False:
            headers["Idempotency-Key"] = idem or key()
        return self.call("POST", f"/v1/holds/{hold['id']}/checkout",
                         {"payment": {"token": token}}, headers, expect,
                         ptype)

    def get_hold(self, hold):
        return self.call("GET", f"/v1/holds/{hold['id']}",
                         headers={"X-Customer-Id": hold["customer_id"]},
                         expect=200)[1]

    def get_booking(self, booking_id, customer="cust-1", expect=200):
        return self.call("GET", f"/v1/bookings/{booking_id}",
                         headers={"X-Customer-Id": customer},
                         expect=expect)[1]

    def seat_states(self, show):
        data = self.call("GET", f"/v1/shows/{show['id']}/seats",
                         expect=200)[1]
        return {r["label"]: r["states"] for r in data["rows"]}

    def booking_db(self, sql, args=()):
        return query(self.booking.db_path, sql, args)

    def assert_checked_clean(self, notify_db=None):
        """`marquee check` on this platform's databases: exit 0, no
        violation, nothing left pending once the repairs settle."""
        return wait_checked_clean(self.booking.db_path,
                                  self.platform.payment.db_path, notify_db)


class CheckoutTest(CheckoutCase):

    @classmethod
    def setUpClass(cls):
        cls.platform = Platform()

    @classmethod
    def tearDownClass(cls):
        cls.platform.close()

    def setUp(self):
        self.platform.dials()

    def test_checkout_makes_a_booking_and_an_event(self):
        show = self.platform.new_show()
        hold = self.hold(show, ["A1", "A2"])
        got, booking = self.checkout(hold, expect=201)
        self.assertEqual(got["location"], f"/v1/bookings/{booking['id']}")
        self.assertTrue(booking["id"].startswith(f"{show['id']}-b"))
        self.assertEqual(booking["status"], "confirmed")
        self.assertEqual(booking["total"], 2 * PRICE)
        self.assertEqual(booking["charged"], 2 * PRICE)
        self.assertEqual([s["id"] for s in booking["seats"]], ["A1", "A2"])
        self.assertEqual(self.get_booking(booking["id"]), booking)
        self.assertEqual(self.get_hold(hold)["status"], "converted")
        self.assertEqual(self.seat_states(show)["A"][:3], "SSF")
        # Payment charged the hold's total once, under this attempt.
        charges = self.platform.charges_of(hold["id"])
        self.assertEqual([(c[0], c[1], c[2]) for c in charges],
                         [(booking["charge_id"], "succeeded", 2 * PRICE)])
        # The event reaches the queue notify reads, with the contract's body.
        rows = wait_until("booking.confirmed in notify.bookings", lambda: [
            r for r in self.platform.events("booking.confirmed")
            if booking["id"] in r[2]])
        self.assertEqual(len(rows), 1)
        event = __import__("json").loads(rows[0][2])
        self.assertEqual(rows[0][0], event["id"])
        self.assertEqual(event["type"], "booking.confirmed")
        self.assertEqual(event["booking_id"], booking["id"])
        self.assertEqual(event["show_id"], show["id"])
        self.assertEqual(event["customer_id"], "cust-1")
        self.assertEqual(event["seats"], ["A1", "A2"])
        self.assertEqual(event["total"], 2 * PRICE)
        self.assertEqual(event["currency"], "INR")
        self.assertIsInstance(event["occurred_at"], int)
        # Counted, and nothing left unsent once the relay ran.
        metrics = self.booking.request("GET", "/metrics")[2].decode()
        self.assertRegex(metrics, r'marquee_booking_checkouts_total'
                         r'\{outcome="confirmed"\} [1-9]')
        wait_until("the outbox drained", lambda: "marquee_booking_outbox_"
                   "unsent 0" in self.booking.request(
                       "GET", "/metrics")[2].decode())
        # Sold seats are not for holding.
        self.call("POST", f"/v1/shows/{show['id']}/holds", {"seats": ["A2"]},
                  {"X-Customer-Id": "cust-2", "Idempotency-Key": key()},
                  409, "seats-taken")

    def test_decline_keeps_the_hold_and_a_new_key_pays(self):
        show = self.platform.new_show()
        hold = self.hold(show, ["A3"])
        first = key()
        _, problem = self.checkout(hold, first, "tok_decline", expect=402,
                                   ptype="payment-declined")
        self.assertTrue(problem["decline_code"])
        self.assertEqual(self.get_hold(hold)["status"], "active")
        # The same key is the same attempt: its answer again, no new call
        # (a refusal's answer is stored within a tick: until then the key
        # counts as in flight).
        got = wait_until("the decline is replayed", lambda: self.checkout(
            hold, first, "tok_decline")[0].get("idempotent-replayed"))
        self.assertEqual(got, "true")
        got, booking = self.checkout(hold, key(), "tok_visa", expect=201)
        statuses = sorted(c[1] for c in self.platform.charges_of(hold["id"]))
        self.assertEqual(statuses, ["declined", "succeeded"])
        self.assertEqual(booking["charged"], PRICE)

    def test_same_key_never_charges_twice(self):
        show = self.platform.new_show()
        hold = self.hold(show, ["A5"])
        k = key()
        _, first = self.checkout(hold, k, expect=201)
        got, again = self.checkout(hold, k, expect=201)
        self.assertEqual(got.get("idempotent-replayed"), "true")
        self.assertEqual(got["location"], f"/v1/bookings/{first['id']}")
        self.assertEqual(again["id"], first["id"])
        # Another key for a booked hold is refused, not charged.
        self.checkout(hold, key(), expect=409, ptype="hold-not-active")
        self.assertEqual(len(self.platform.charges_of(hold["id"])), 1)

    def test_second_checkout_while_one_is_in_flight(self):
        show = self.platform.new_show()
        hold = self.hold(show, ["A7"])
        self.platform.dials(latency_ms=1200)
        done = {}
        first = threading.Thread(target=lambda: done.setdefault(
            "r", self.booking.request(
                "POST", f"/v1/holds/{hold['id']}/checkout",
                {"payment": {"token": "tok_visa"}},
                {"X-Customer-Id": "cust-1", "Idempotency-Key": key()})))
        first.start()
        try:
            wait_until("the first charge reaches payment", lambda: query(
                self.booking.db_path,
                "SELECT 1 FROM intents WHERE hold_id = ?", (hold["id"],)))
            self.checkout(hold, key(), expect=409,
                          ptype="checkout-in-progress")
            # Nor may the hold be released under the payment.
            self.call("DELETE", f"/v1/holds/{hold['id']}",
                      headers={"X-Customer-Id": "cust-1"}, expect=409,
                      ptype="checkout-in-progress")
        finally:
            first.join()
        self.assertEqual(done["r"][0], 201, done["r"])
        self.assertEqual(len(self.platform.charges_of(hold["id"])), 1)

    def test_payment_outage_answers_503_and_keeps_the_hold(self):
        show = self.platform.new_show()
        hold = self.hold(show, ["B1"])
        self.platform.dials(outage=True)
        try:
            got, _ = self.checkout(hold, expect=503)
            self.assertIn("retry-after", got)
            # Enough failures open the breaker: refused without a call.
            for _ in range(6):
                self.checkout(hold)
            wait_until("breaker open", lambda: "marquee_booking_payment_"
                       "breaker_state 1" in self.booking.request(
                           "GET", "/metrics")[2].decode())
            got, _ = self.checkout(hold, expect=503)
            self.assertGreaterEqual(int(got["retry-after"]), 1)
            held = self.get_hold(hold)
            self.assertEqual(held["status"], "active")
            self.call("POST", f"/v1/holds/{hold['id']}/extend", None,
                      {"X-Customer-Id": "cust-1"}, 200)
        finally:
            self.platform.dials(outage=False)
        self.assertEqual(self.platform.charges_of(hold["id"]), [])
        # Once payment is back (and the breaker has probed), it pays.
        wait_until("checkout succeeds after the outage", lambda:
                   self.checkout(hold)[1].get("status") == "confirmed")
        self.assertEqual(len(self.platform.charges_of(hold["id"])), 1)

    def test_kill_while_charging_leaves_a_booking(self):
        show = self.platform.new_show()
        hold = self.hold(show, ["B3", "B4"])
        self.platform.dials(latency_ms=1500)
        result = {}
        sender = threading.Thread(target=lambda: result.setdefault(
            "r", _request_or_error(self.booking, hold)))
        sender.start()
        wait_until("the intent is recorded", lambda: self.booking_db(
            "SELECT 1 FROM intents WHERE hold_id = ?", (hold["id"],)))
        self.booking.kill()
        sender.join()
        self.booking.start()
        # The charge lands at payment; the reconciler finds it and books.
        wait_until("the reconciler books the paid hold", lambda:
                   self.booking_db("SELECT 1 FROM bookings WHERE hold_id = ?",
                                   (hold["id"],)))
        charges = self.platform.charges_of(hold["id"])
        self.assertEqual([c[1] for c in charges], ["succeeded"])
        state = self.booking_db("SELECT state FROM intents WHERE hold_id = ?",
                                (hold["id"],))
        self.assertEqual(state, [("confirmed",)])
        self.assertEqual(self.seat_states(show)["B"][2:4], "SS")
        # One charge, one booking: the checker agrees, over everything.
        summary = self.assert_checked_clean()
        self.assertGreaterEqual(summary["checked"]["bookings"], 1)

    def test_timeout_then_the_same_key_books_once(self):
        show = self.platform.new_show()
        hold = self.hold(show, ["B7"])
        k = key()
        payment = self.platform.payment
        payment.proc.send_signal(signal.SIGSTOP)
        try:
            # No answer within booking.payment_timeout_ms: maybe charged.
            got, _ = self.checkout(hold, k, expect=503)
            self.assertIn("retry-after", got)
            self.assertEqual(self.booking_db(
                "SELECT state FROM intents WHERE hold_id = ?",
                (hold["id"],)), [("pending",)])
            # Another attempt must wait for this one to be settled.
            self.checkout(hold, key(), expect=409,
                          ptype="checkout-in-progress")
        finally:
            payment.proc.send_signal(signal.SIGCONT)
        # The same key repeats the same payment attempt: one charge.
        booking = wait_until("the same key books", lambda: (
            lambda r: r[1] if r[1].get("status") == "confirmed" else None)(
                self.checkout(hold, k)))
        charges = self.platform.charges_of(hold["id"])
        self.assertEqual([(c[0], c[1]) for c in charges],
                         [(booking["charge_id"], "succeeded")])

    def test_attempt_payment_never_saw_is_abandoned(self):
        show = self.platform.new_show()
        hold = self.hold(show, ["B8"])
        payment = self.platform.payment
        payment.proc.send_signal(signal.SIGSTOP)
        try:
            self.checkout(hold, expect=503)
        finally:
            # Killed before it read the request: nothing was charged.
            payment.kill()
        payment.start()
        wait_until("the reconciler abandons the attempt", lambda:
                   self.booking_db(
                       "SELECT 1 FROM intents WHERE hold_id = ? AND "
                       "state = 'abandoned'", (hold["id"],)))
        self.assertEqual(self.platform.charges_of(hold["id"]), [])
        # The hold is free to be paid for with a new attempt.
        wait_until("a new attempt books", lambda: self.checkout(hold)[1].get(
            "status") == "confirmed")
        self.assertEqual([c[1] for c in self.platform.charges_of(
            hold["id"])], ["succeeded"])
        summary = self.assert_checked_clean()
        self.assertGreaterEqual(summary["checked"]["charges"], 1)

    def test_full_payment_queue_answers_503(self):
        # A booking of its own needs a payment of its own: its charges in
        # the suite's payment database would have no attempt in the
        # suite's booking database, and `marquee check` runs on those two.
        with Service("payment", flags=PAYMENT_FLAGS) as payment:
            self._full_payment_queue_answers_503(payment)

    def _full_payment_queue_answers_503(self, payment):
        flags = {"booking.catalog_url": self.platform.catalog.url,
                 "booking.payment_url": payment.url,
                 "booking.payment_workers": "1",
                 "booking.checkout_queue_max": "1",
                 "booking.payment_timeout_ms": "2500",
                 "booking.reconcile_after_ms": "3500"}
        show = self.platform.new_show()
        status, _, data = payment.json("PUT", "/admin/provider",
                                   dict(DIALS, latency_ms=700), ADMIN)
        self.assertEqual(status, 200, data)
        with Service("booking", flags=flags) as small:
            holds = [self.call("POST", f"/v1/shows/{show['id']}/holds",
                               {"seats": [f"A{i}"]},
                               {"X-Customer-Id": "cust-1",
                                "Idempotency-Key": key()}, 201, svc=small)[1]
                     for i in (1, 2, 3, 4)]
            results = [None] * len(holds)

            def pay(i):
                results[i] = small.request(
                    "POST", f"/v1/holds/{holds[i]['id']}/checkout",
                    {"payment": {"token": "tok_visa"}},
                    {"X-Customer-Id": "cust-1", "Idempotency-Key": key()})
            threads = [threading.Thread(target=pay, args=(i,))
                       for i in range(len(holds))]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            statuses = sorted(r[0] for r in results)
            # One worker and one queued: the others are refused at once.
            self.assertIn(503, statuses, results)
            self.assertIn(201, statuses, results)
            for h, r in zip(holds, results):
                charged = query(payment.db_path,
                                "SELECT id FROM charges WHERE reference "
                                "LIKE ? AND status = 'succeeded'",
                                (h["id"] + ".%",))
                self.assertEqual(len(charged), 1 if r[0] == 201 else 0, r)
                if r[0] == 503:
                    self.assertIn("retry-after", r[1])
                    self.assertEqual(self.call(
                        "GET", f"/v1/holds/{h['id']}",
                        headers={"X-Customer-Id": "cust-1"}, expect=200,
                        svc=small)[1]["status"], "active")

    def test_bad_requests(self):
        show = self.platform.new_show()
        hold = self.hold(show, ["B6"])
        path = f"/v1/holds/{hold['id']}/checkout"
        me = {"X-Customer-Id": "cust-1"}
        self.checkout(hold, idem=False, expect=400,
                      ptype="idempotency-key-required")
        self.call("POST", path, {"payment": {"token": "tok_visa"}},
                  {"X-Customer-Id": "cust-1", "Idempotency-Key": " "}, 400,
                  "invalid-idempotency-key")
        self.call("POST", path, {"payment": {"token": "tok_visa"}},
                  {"Idempotency-Key": key()}, 400, "invalid-customer")
        self.call("POST", path, "{", dict(me, **{
            "Idempotency-Key": key(), "Content-Type": "application/json"}),
            400, "malformed-json")
        self.call("POST", path, "x", dict(me, **{
            "Idempotency-Key": key(), "Content-Type": "text/plain"}), 415)
        for body, field in (({}, "payment"),
                            ({"payment": {}}, "payment.token"),
                            ({"payment": {"token": "visa"}}, "payment.token"),
                            ({"payment": {"token": "tok_visa"}, "x": 1}, "x"),
                            ({"payment": "tok_visa"}, "payment")):
            _, problem = self.call("POST", path, body, dict(
                me, **{"Idempotency-Key": key()}), 422, "validation-failed")
            self.assertIn(field, [e["field"] for e in problem["errors"]],
                          body)
        # Someone else's hold, and holds that do not exist, are not found.
        self.checkout(hold, customer="cust-2", expect=404, ptype="not-found")
        self.assertEqual(self.get_hold(hold), hold)
        self.assertEqual(self.seat_states(show)["B"][5], "H")  # B6 held
        self.assertEqual(self.platform.charges_of(hold["id"]), [])
        self.assertEqual(self.booking_db(
            "SELECT count(*) FROM intents WHERE hold_id = ?",
            (hold["id"],))[0][0], 0)
        self.call("POST", f"/v1/holds/{show['id']}-00000000000000ff/checkout",
                  {"payment": {"token": "tok_visa"}},
                  dict(me, **{"Idempotency-Key": key()}), 404, "not-found")
        self.call("POST", "/v1/holds/nope/checkout",
                  {"payment": {"token": "tok_visa"}},
                  dict(me, **{"Idempotency-Key": key()}), 404, "not-found")
        # A released hold cannot be paid for.
        self.call("DELETE", f"/v1/holds/{hold['id']}", headers=me,
                  expect=200)
        self.checkout(hold, expect=409, ptype="hold-not-active")
        self.assertEqual(self.platform.charges_of(hold["id"]), [])


def _request_or_error(svc, hold):
    try:
        return svc.request("POST", f"/v1/holds/{hold['id']}/checkout",
                           {"payment": {"token": "tok_visa"}},
                           {"X-Customer-Id": "cust-1",
                            "Idempotency-Key": key()})
    except OSError as e:
        return e


class LatePaymentTest(CheckoutCase):
    """Holds that live two seconds, and a provider slower than that."""

    @classmethod
    def setUpClass(cls):
        cls.platform = Platform({"booking.max_hold_life_s": "2",
                                 "booking.payment_timeout_ms": "3500",
                                 "booking.reconcile_after_ms": "4500"})

    @classmethod
    def tearDownClass(cls):
        cls.platform.close()

    def setUp(self):
        self.platform.dials()

    def test_payment_after_the_hold_expired_is_refunded(self):
        show = self.platform.new_show()
        hold = self.hold(show, ["A1"])
        self.platform.dials(latency_ms=2600)
        k = key()
        _, problem = self.checkout(hold, k, expect=409, ptype="hold-expired")
        refund = problem["refund"]
        self.assertEqual(refund["amount"], PRICE)
        self.assertEqual(refund["state"], "done")
        self.assertTrue(refund["payment_refund_id"].startswith("re_"))
        charges = self.platform.charges_of(hold["id"])
        self.assertEqual([(c[1], c[2], c[3]) for c in charges],
                         [("succeeded", PRICE, PRICE)])
        self.assertEqual(problem["charge_id"], charges[0][0])
        # The seat is free again, and nobody has a booking of it.
        self.assertEqual(self.seat_states(show)["A"][0], "F")
        self.assertEqual(self.booking_db(
            "SELECT count(*) FROM bookings WHERE hold_id = ?",
            (hold["id"],)), [(0,)])
        # The same attempt again gets the same answer; nothing is charged.
        again = wait_until("the answer is replayed", lambda: (
            lambda r: r[1] if r[0].get("idempotent-replayed") else None)(
                self.checkout(hold, k)))
        self.assertEqual(again["type"], "/problems/hold-expired")
        self.assertEqual(again["refund"]["id"], refund["id"])
        self.assertEqual(len(self.platform.charges_of(hold["id"])), 1)

    def test_same_key_after_the_hold_ended_charges_nothing_new(self):
        show = self.platform.new_show()
        hold = self.hold(show, ["A5"])
        k = key()
        payment = self.platform.payment
        payment.proc.send_signal(signal.SIGSTOP)
        try:
            self.checkout(hold, k, expect=503)
        finally:
            payment.kill()  # it never read the charge
        payment.start()
        # The hold has ended: the attempt is settled (503 until the
        # reconciler may decide), never charged again.
        problem = wait_until("the attempt is abandoned", lambda: (
            lambda r: r[1] if r[1]["status"] == 409 else None)(
                self.checkout(hold, k)))
        self.assertEqual(problem["type"], "/problems/hold-not-active")
        self.assertEqual(self.platform.charges_of(hold["id"]), [])

    def test_refund_survives_payment_refusing_it_at_first(self):
        show = self.platform.new_show()
        hold = self.hold(show, ["A3"])
        self.platform.dials(latency_ms=2600)
        # Payment's refunds fail while its database is locked by this
        # test; booking records the refund as due and retries it.
        con = sqlite3.connect(self.platform.payment.db_path, timeout=10,
                              isolation_level=None)
        try:
            result = {}
            t = threading.Thread(target=lambda: result.setdefault(
                "r", self.checkout(hold, expect=409, ptype="hold-expired")))
            t.start()
            wait_until("the charge is committed", lambda: [
                c for c in self.platform.charges_of(hold["id"])
                if c[1] == "succeeded"], timeout=WAIT_S)
            con.execute("BEGIN IMMEDIATE")
            t.join()
            time.sleep(0.3)
        finally:
            con.execute("ROLLBACK") if con.in_transaction else None
            con.close()
        wait_until("the refund is done at payment", lambda: [
            c for c in self.platform.charges_of(hold["id"])
            if c[3] == PRICE])
        wait_until("booking records the refund as done", lambda:
                   self.booking_db(
                       "SELECT 1 FROM refunds r JOIN intents i ON "
                       "i.id = r.intent_id WHERE i.hold_id = ? AND "
                       "r.state = 'done'", (hold["id"],)))

    def test_kill_while_charging_an_expiring_hold_refunds(self):
        show = self.platform.new_show()
        hold = self.hold(show, ["B1"])
        self.platform.dials(latency_ms=2200)
        sender = threading.Thread(
            target=lambda: _request_or_error(self.booking, hold))
        sender.start()
        wait_until("the intent is recorded", lambda: self.booking_db(
            "SELECT 1 FROM intents WHERE hold_id = ?", (hold["id"],)))
        self.booking.kill()
        sender.join()
        self.booking.start()
        wait_until("the charge is refunded", lambda: [
            c for c in self.platform.charges_of(hold["id"])
            if c[1] == "succeeded" and c[3] == PRICE])
        self.assertEqual(self.booking_db(
            "SELECT state FROM intents WHERE hold_id = ?", (hold["id"],)),
            [("refunding",)])
        self.assertEqual(self.booking_db(
            "SELECT count(*) FROM bookings WHERE hold_id = ?",
            (hold["id"],)), [(0,)])
        # The refund is pending until booking records it as done; then
        # the charge has its full refund and the money adds up.
        summary = self.assert_checked_clean()
        self.assertGreaterEqual(summary["checked"]["charges"], 1)


if __name__ == "__main__":
    unittest.main()
