"""The notify service: e-tickets from booking events, through the real queue.

Real processes: `marquee notify` with its own SQLite database, and a queue
file that `marquee mq publish` feeds (booking is not needed: the tests
publish the events booking would).  They prove one ticket and one message
per booking whatever is delivered twice, across a stop, and across a
SIGKILL between the commit of an effect and its ack; that poison messages
end in the dead letters; the ticket, its QR code (checked module by module
against libqrencode's own matrix, loaded with ctypes) and the door check;
and a precise problem for every bad request.  Lease and retry times are
cut short through config keys so the suite takes a minute or two.

NotifyWithBookingTest runs the whole path with the real booking service:
catalog, payment, booking and notify on one queue file; a checkout makes
a ticket, and cancellations through booking's API cancel its seats; a
SIGKILL of notify between its ticket's commit and its ack leaves one
ticket.  `marquee check` then finds the three databases clean.
"""

import base64
import ctypes
import hashlib
import hmac
import json
import os
import re
import shutil
import sqlite3
import subprocess
import tempfile
import time
import unittest
import xml.etree.ElementTree as ET

from support import SANITIZER_ENV, ApiSchema, Service, free_port, marquee_bin
from test_checkout import CheckoutCase, Platform, key, query
from test_logs import LINE_RE, log_lines

try:  # the private broker of the RabbitMQ backend's tests
    import rabbit
except ImportError:
    rabbit = None

KEY = "integration-test-ticket-key-0123456789abcdef"
TOKEN = "notify-test-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
QUEUE = "notify.bookings"
# Events take milliseconds; the slack is for a loaded machine and ASan.
WAIT_S = 20.0
SVG_NS = "{http://www.w3.org/2000/svg}"


def wait_until(what, check, timeout=WAIT_S, interval=0.05):
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        time.sleep(interval)


def confirmed(event_id, booking, customer="cust-1", seats=("A1", "A2"),
              total=50000):
    show = int(booking.split("-", 1)[0])
    return {"id": event_id, "type": "booking.confirmed", "booking_id": booking,
            "show_id": show, "customer_id": customer, "seats": list(seats),
            "total": total, "currency": "INR",
            "occurred_at": 1764800000000, "hold_id": "h-1"}


def cancelled(event_id, booking, seats, remaining, customer="cust-1",
              reason="customer"):
    show = int(booking.split("-", 1)[0])
    return {"id": event_id, "type": "booking.cancelled",
            "booking_id": booking, "show_id": show, "customer_id": customer,
            "seats": list(seats), "remaining_seats": list(remaining),
            "refund": 22500, "fee": 2500, "currency": "INR",
            "reason": reason, "occurred_at": 1764800000001}


def sign(ticket_id, booking):
    """A code made here with the service's key, as the service makes it."""
    text = f"MQT1.{ticket_id}.{booking}"
    mac = hmac.new(KEY.encode(), text.encode(), hashlib.sha256).digest()
    return text + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


class QRcode(ctypes.Structure):
    _fields_ = [("version", ctypes.c_int), ("width", ctypes.c_int),
                ("data", ctypes.POINTER(ctypes.c_ubyte))]


def qr_matrix(text):
    """libqrencode's own matrix of text (level M, 8-bit), as rows of 0/1."""
    lib = ctypes.CDLL("libqrencode.so.4")
    lib.QRcode_encodeString.restype = ctypes.POINTER(QRcode)
    lib.QRcode_encodeString.argtypes = [ctypes.c_char_p, ctypes.c_int,
                                        ctypes.c_int, ctypes.c_int,
                                        ctypes.c_int]
    lib.QRcode_free.argtypes = [ctypes.POINTER(QRcode)]
    qr = lib.QRcode_encodeString(text.encode(), 0, 1, 2, 1)  # M, 8-bit
    assert qr, "libqrencode failed"
    w = qr.contents.width
    rows = [[qr.contents.data[y * w + x] & 1 for x in range(w)]
            for y in range(w)]
    lib.QRcode_free(qr)
    return rows


class NotifyTest(unittest.TestCase):

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="marquee-notify-q-")
        self.queue = os.path.join(self.tmp, "queue.db")
        self.services = []
        self.serial = 0
        self.attempts = "3"

    def backend_flags(self):
        """Extra mq.* flags of every process (the SQLite queue: none)."""
        return []

    def tearDown(self):
        try:
            # Every line any notify wrote keeps the project's log format.
            for svc in self.services:
                for line in log_lines(svc):
                    self.assertRegex(line, LINE_RE)
        finally:
            for svc in self.services:
                svc.close()
            shutil.rmtree(self.tmp, ignore_errors=True)

    # ------------------------------------------------------------ helpers

    def start(self, svc=None, **flags):
        """A notify on this test's queue, or svc restarted."""
        if svc is not None:
            svc.start()
            return svc
        base = {"mq.path": self.queue, "notify.ticket_key": KEY,
                "notify.admin_token": TOKEN, "notify.retry_ms": "100",
                "mq.lease_ms": "5000", "mq.max_attempts": "3",
                "http.threads": "2"}
        base.update(dict(f[2:].split("=", 1) for f in self.backend_flags()))
        base.update(flags)
        # The tool declares with the same delivery limit (RabbitMQ refuses
        # to redeclare a queue with another).
        self.attempts = base["mq.max_attempts"]
        svc = Service("notify", flags=base)
        self.services.append(svc)
        return svc

    def mq(self, *args):
        env = dict(os.environ)
        for k, v in SANITIZER_ENV.items():
            env.setdefault(k, v)
        p = subprocess.run([marquee_bin(), "mq", *args,
                            f"--mq.path={self.queue}",
                            f"--mq.max_attempts={self.attempts}",
                            *self.backend_flags()],
                           capture_output=True, text=True, timeout=30,
                           env=env)
        self.assertEqual(p.returncode, 0, p.stderr)
        return [json.loads(line) for line in p.stdout.splitlines()]

    def publish(self, event, message_id=None, topic=None):
        """Publishes an event (a dict, or raw text) as booking would."""
        self.serial += 1
        body = event if isinstance(event, str) else json.dumps(event)
        topic = topic or (event["type"] if isinstance(event, dict)
                          else "booking.confirmed")
        message_id = message_id or f"msg-{self.serial}"
        [got] = self.mq("publish", f"--topic={topic}", f"--id={message_id}",
                        f"--body={body}")
        self.assertEqual(got["stored"], 1, got)

    def depth(self):
        [got] = self.mq("depth", QUEUE)
        return got

    def drained(self):
        """Waits until every message was acked or dead-lettered."""
        return wait_until("the queue is drained", lambda: (
            lambda d: d if d["ready"] == 0 and d["leased"] == 0 else None)(
                self.depth()))

    def ticket(self, svc, booking, customer="cust-1"):
        return svc.json("GET", f"/v1/tickets/{booking}",
                        headers={"X-Customer-Id": customer})

    def wait_ticket(self, svc, booking, customer="cust-1"):
        def ready():
            status, _, body = self.ticket(svc, booking, customer)
            return body if status == 200 else None
        return wait_until(f"ticket of {booking}", ready)

    def deliveries(self, svc, customer="cust-1"):
        status, _, body = svc.json("GET",
                                   f"/admin/deliveries?customer={customer}",
                                   headers=ADMIN)
        self.assertEqual(status, 200, body)
        return body["deliveries"]

    def metric(self, svc, outcome):
        _, _, text = svc.request("GET", "/metrics")
        m = re.search(r'^marquee_notify_events_total\{outcome="%s"\} (\d+)$'
                      % outcome, text.decode(), re.M)
        return int(m.group(1)) if m else 0

    def settled(self, svcs, **want):
        """Waits until the services' outcome counters add up to want
        (issued=1, duplicate=2, ...): every message applied and acked.
        Queue depth alone cannot tell on RabbitMQ, which does not count
        unacknowledged messages in a passive declare."""
        svcs = svcs if isinstance(svcs, list) else [svcs]

        def got():
            return {k: sum(self.metric(svc, k) for svc in svcs)
                    for k in want}
        try:
            wait_until(f"outcomes {want}", lambda: got() == want)
        except AssertionError:
            raise AssertionError(f"outcomes {got()}, expected {want}")

    def db_counts(self, svc, path=None):
        """Rows of the service's database, read with SQLite itself."""
        with sqlite3.connect(path or svc.db_path) as db:
            return {t: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                    for t in ("tickets", "deliveries", "events")}

    def check(self, method, path, status, headers, body):
        return ApiSchema.for_file("notify.yaml").check(method, path, status,
                                                       headers, body)

    def problem(self, got, status, slug):
        code, headers, body = got
        self.assertEqual(code, status, body)
        self.assertEqual(headers["content-type"], "application/problem+json")
        doc = json.loads(body)
        self.assertEqual(doc["type"], f"/problems/{slug}", doc)
        return doc

    # ------------------------------------------------------------ tests

    def test_ticket_qr_and_door_check(self):
        svc = self.start()
        self.publish(confirmed("ev-1", "27-00ab3f9c1d2e4b5a"))
        ticket = self.wait_ticket(svc, "27-00ab3f9c1d2e4b5a")
        status, headers, body = svc.request(
            "GET", "/v1/tickets/27-00ab3f9c1d2e4b5a",
            headers={"X-Customer-Id": "cust-1"})
        self.check("GET", "/v1/tickets/{booking_id}", status, headers, body)
        self.assertEqual(headers["cache-control"], "private, no-cache")
        self.assertEqual(ticket["status"], "valid")
        self.assertEqual(ticket["show_id"], 27)
        self.assertEqual(ticket["seats"], [{"seat": "A1", "state": "valid"},
                                           {"seat": "A2", "state": "valid"}])
        self.assertEqual(ticket["code"],
                         sign(ticket["ticket_id"], "27-00ab3f9c1d2e4b5a"))

        # The QR code: valid SVG, every dark module of libqrencode's
        # matrix and no other, inside a quiet zone of 4.
        status, headers, svg = svc.request(
            "GET", ticket["qr_url"], headers={"X-Customer-Id": "cust-1"})
        self.check("GET", "/v1/tickets/{booking_id}/qr.svg", status, headers,
                   svg)
        self.assertEqual(headers["content-type"], "image/svg+xml")
        self.assertEqual(headers["cache-control"], "private, max-age=86400")
        root = ET.fromstring(svg)
        self.assertEqual(root.tag, f"{SVG_NS}svg")
        matrix = qr_matrix(ticket["code"])
        w = len(matrix)
        self.assertEqual(root.get("viewBox"), f"0 0 {w + 8} {w + 8}")
        [path] = root.findall(f"{SVG_NS}path")
        drawn = set()
        for x, y, n, n2 in re.findall(r"M(\d+),(\d+)h(\d+)v1h-(\d+)z",
                                      path.get("d")):
            self.assertEqual(n, n2)
            for i in range(int(n)):
                drawn.add((int(x) + i - 4, int(y) - 4))
        want = {(x, y) for y in range(w) for x in range(w) if matrix[y][x]}
        self.assertEqual(len(drawn), len(want))
        self.assertEqual(drawn, want)
        self.assertEqual(path.get("d"),
                         "".join(re.findall(r"M\d+,\d+h\d+v1h-\d+z",
                                            path.get("d"))))

        # The door: the code is admitted; changed, made up or unknown not.
        verify = lambda code: svc.request(  # noqa: E731
            "POST", "/v1/tickets/verify", body={"code": code})
        got = verify(ticket["code"])
        self.check("POST", "/v1/tickets/verify", *got)
        self.assertEqual(json.loads(got[2])["ticket_id"], ticket["ticket_id"])
        tampered = ticket["code"][:-1] + (
            "A" if ticket["code"][-1] != "A" else "B")
        got = verify(tampered)
        self.check("POST", "/v1/tickets/verify", *got)
        doc = self.problem(got, 422, "ticket-forged")
        self.assertEqual(doc["booking_id"], "27-00ab3f9c1d2e4b5a")
        other = ticket["code"].replace("27-00ab3f9c1d2e4b5a",
                                       "27-00ab3f9c1d2e4b5b")
        self.problem(verify(other), 422, "ticket-forged")
        got = verify(sign("tk_" + "ab" * 12, "27-00ab3f9c1d2e4b5a"))
        self.check("POST", "/v1/tickets/verify", *got)
        self.problem(got, 404, "ticket-unknown")
        for bad in ("hello", "MQT2." + ticket["code"][5:],
                    ticket["code"] + ".x", ticket["code"][:-1]):
            got = verify(bad)
            self.check("POST", "/v1/tickets/verify", *got)
            self.problem(got, 422, "ticket-code-malformed")
        self.assertIn("ticket_code_forged", svc.log())

        # One message, to the right customer.
        [msg] = self.deliveries(svc)
        self.assertEqual(msg["kind"], "tickets")
        self.assertIn("Your tickets for show 27, seats A1, A2", msg["message"])
        self.assertIn(ticket["ticket_id"], msg["message"])
        self.assertEqual(self.deliveries(svc, "cust-2"), [])

    def test_same_event_twice_and_two_events_for_one_booking(self):
        svc = self.start()
        event = confirmed("ev-1", "31-b1")
        # Two copies of one event (the queue refuses one message id twice,
        # so the second copy comes under another one, as a relay that
        # resent after the queue's dedup window would send it).
        self.publish(event)
        self.publish(event)
        # Another event id confirming the same booking.
        self.publish(confirmed("ev-2", "31-b1"))
        self.settled(svc, issued=1, duplicate=2)
        self.drained()
        self.assertEqual(len(self.deliveries(svc)), 1)
        self.assertEqual(self.db_counts(svc),
                         {"tickets": 1, "deliveries": 1, "events": 2})

    def test_events_published_while_down_issue_once(self):
        # The first start declares the queue; events published while the
        # service is down wait in it.
        svc = self.start()
        self.assertEqual(svc.stop(), 0)
        bookings = [f"40-{i:04d}" for i in range(20)]
        for i, booking in enumerate(bookings):
            self.publish(confirmed(f"down-{i}", booking,
                                   customer=f"c-{i % 3}"))
        self.publish(confirmed("down-3", bookings[3], customer="c-0"))
        self.assertEqual(self.depth()["ready"], 21)
        self.start(svc)
        self.drained()
        for i, booking in enumerate(bookings):
            t = self.wait_ticket(svc, booking, customer=f"c-{i % 3}")
            self.assertEqual(t["booking_id"], booking)
        self.assertEqual(self.db_counts(svc),
                         {"tickets": 20, "deliveries": 20, "events": 20})
        self.assertEqual(sum(len(self.deliveries(svc, f"c-{i}"))
                             for i in range(3)), 20)

    def test_kill_between_effect_and_ack(self):
        # Declared first, so all events are there when notify starts and
        # one claim takes them all: one commit, then a long pause before
        # the acks, in which the process is killed.
        self.mq("declare", QUEUE, "booking.#")
        bookings = [f"50-{i:04d}" for i in range(10)]
        for i, booking in enumerate(bookings):
            self.publish(confirmed(f"kill-{i}", booking))
        svc = self.start(**{"notify.ack_delay_ms": "8000",
                            "mq.lease_ms": "10000"})
        for booking in bookings:
            self.wait_ticket(svc, booking)
        if not self.backend_flags():  # RabbitMQ does not count them
            self.assertEqual(self.depth()["leased"], 10)  # effects, no acks
        svc.kill()
        self.assertEqual(self.db_counts(svc)["tickets"], 10)

        # The leases end; the restarted service gets every event again.
        svc.args = [a for a in svc.args
                    if not a.startswith("--notify.ack_delay_ms=")]
        svc.args.append("--mq.lease_ms=2000")
        self.start(svc)
        self.settled(svc, issued=0, duplicate=10)
        self.drained()
        self.assertEqual(self.db_counts(svc),
                         {"tickets": 10, "deliveries": 10, "events": 10})
        for booking in bookings:
            t = self.wait_ticket(svc, booking)
            self.assertEqual(t["status"], "valid")

    def test_two_instances_one_database_exactly_once(self):
        # Two processes consume the queue at once and write one database;
        # every event comes twice (under two message ids), so copies of one
        # event race each other in the two processes.
        self.mq("declare", QUEUE, "booking.#")
        shared = os.path.join(self.tmp, "shared.db")
        bookings = [f"55-{i:04d}" for i in range(25)]
        for i, booking in enumerate(bookings):
            event = confirmed(f"twin-{i}", booking, customer=f"t-{i % 4}")
            self.publish(event)
            self.publish(event)
        # Small batches held a moment before their acks: neither process
        # can finish alone before the other has started.
        flags = {"store.path": shared, "mq.prefetch": "4",
                 "notify.ack_delay_ms": "200"}
        one = self.start(**flags)
        two = self.start(**flags)
        self.settled([one, two], issued=25, duplicate=25)
        self.drained()
        self.assertGreater(self.metric(one, "issued"), 0)
        self.assertGreater(self.metric(two, "issued"), 0)
        self.assertEqual(self.db_counts(one, shared),
                         {"tickets": 25, "deliveries": 25, "events": 25})

    def test_poison_messages_end_in_the_dead_letters(self):
        svc = self.start(**{"mq.max_attempts": "2"})
        self.publish("this is not json", message_id="poison-1")
        self.publish({"id": "p-2", "type": "booking.held"},
                     message_id="poison-2", topic="booking.held")
        broken = confirmed("p-3", "60-b1")
        del broken["seats"]
        self.publish(broken, message_id="poison-3")
        # A good event behind them is not held up.
        self.publish(confirmed("good-1", "60-b2"))
        self.wait_ticket(svc, "60-b2")
        wait_until("three dead letters", lambda: self.depth()["dead"] == 3)
        dead = {d["id"]: d for d in self.mq("dead", QUEUE)}
        self.assertEqual(set(dead), {"poison-1", "poison-2", "poison-3"})
        self.assertIn("body is not JSON", dead["poison-1"]["error"])
        self.assertEqual(dead["poison-1"]["body"], "this is not json")
        self.assertIn("unknown event type booking.held",
                      dead["poison-2"]["error"])
        self.assertIn("missing field seats", dead["poison-3"]["error"])
        self.assertTrue(all(d["attempts"] == 2 for d in dead.values()))
        self.settled(svc, dead=3, retried=3)
        self.assertEqual(self.db_counts(svc)["events"], 1)
        # Paging through the dead letters.
        [first] = self.mq("dead", QUEUE, "--limit=1")
        rest = self.mq("dead", QUEUE, f"--after={first['tag']}")
        self.assertEqual(len(rest), 2)
        # An operator requeues one; it fails again and comes back dead.
        self.mq("requeue", QUEUE, str(dead["poison-3"]["tag"]))
        self.settled(svc, dead=4)
        wait_until("three dead letters again",
                   lambda: self.depth()["dead"] == 3)

    def test_cancellations(self):
        svc = self.start()
        self.publish(confirmed("c-1", "70-b1", seats=("A1", "A2", "A3")))
        ticket = self.wait_ticket(svc, "70-b1")
        self.publish(cancelled("c-2", "70-b1", ["A2"], ["A1", "A3"]))
        # Cancelled seats again, under another event id: nothing more.
        self.publish(cancelled("c-2b", "70-b1", ["A2"], ["A1", "A3"]))
        self.settled(svc, issued=1, cancelled=1, duplicate=1)
        _, _, t = self.ticket(svc, "70-b1")
        self.assertEqual(t["status"], "valid")
        self.assertEqual([s["state"] for s in t["seats"]],
                         ["valid", "cancelled", "valid"])
        got = svc.request("POST", "/v1/tickets/verify",
                          body={"code": ticket["code"]})
        self.assertEqual(got[0], 200)

        self.publish(cancelled("c-3", "70-b1", ["A1", "A3"], [],
                               reason="show_cancelled"))
        self.settled(svc, issued=1, cancelled=2, duplicate=1)
        status, headers, body = svc.request(
            "GET", "/v1/tickets/70-b1", headers={"X-Customer-Id": "cust-1"})
        t = self.check("GET", "/v1/tickets/{booking_id}", status, headers,
                       body)
        self.assertEqual(t["status"], "cancelled")
        self.assertIn("cancelled_at", t)
        got = svc.request("POST", "/v1/tickets/verify",
                          body={"code": ticket["code"]})
        self.check("POST", "/v1/tickets/verify", *got)
        self.problem(got, 409, "ticket-cancelled")

        msgs = self.deliveries(svc)
        self.assertEqual([m["kind"] for m in msgs],
                         ["tickets", "cancellation", "cancellation"])
        self.assertIn("Refund INR 225.00 (cancellation fee INR 25.00). "
                      "Your ticket stays valid for seats A1, A3.",
                      msgs[1]["message"])
        self.assertIn("because the show is cancelled", msgs[2]["message"])

        # A cancellation that comes before its confirmation waits for it.
        self.publish(cancelled("c-5", "70-b2", ["A1"], ["A2"]))
        wait_until("the early cancellation is retried",
                   lambda: self.metric(svc, "retried") >= 1)
        self.publish(confirmed("c-4", "70-b2"))
        self.settled(svc, issued=2, cancelled=3, duplicate=1)
        self.drained()
        _, _, t = self.ticket(svc, "70-b2")
        self.assertEqual([s["state"] for s in t["seats"]],
                         ["cancelled", "valid"])

    def test_bad_requests_get_precise_problems(self):
        svc = self.start()
        self.publish(confirmed("b-1", "80-b1", customer="owner"))
        self.wait_ticket(svc, "80-b1", customer="owner")

        def get(path, customer):
            headers = {} if customer is None else {"X-Customer-Id": customer}
            got = svc.request("GET", path, headers=headers)
            self.check("GET", path, *got)
            return got

        for path in ("/v1/tickets/80-b1", "/v1/tickets/80-b1/qr.svg"):
            # Someone else's ticket is as good as none.
            doc = self.problem(get(path, "someone-else"), 404, "not-found")
            self.assertEqual(doc["detail"],
                             "there is no ticket for booking 80-b1")
            self.problem(get(path, None), 400, "invalid-customer")
            self.problem(get(path, "bad customer"), 400, "invalid-customer")
        self.problem(get("/v1/tickets/80-nothing", "owner"), 404, "not-found")
        self.problem(get("/v1/tickets/not-a-booking", "owner"), 404,
                     "not-found")

        def verify(body, ctype="application/json"):
            got = svc.request("POST", "/v1/tickets/verify", body=body,
                              headers={"Content-Type": ctype})
            self.check("POST", "/v1/tickets/verify", *got)
            return got

        got = svc.request("PUT", "/v1/tickets/verify", body={"code": "x"})
        self.check("POST", "/v1/tickets/verify", *got)
        self.problem(got, 405, "method-not-allowed")
        self.assertIn("POST", got[1]["allow"].split(", "))
        got = verify(json.dumps({"code": "x" * (70 * 1024)}))
        self.assertEqual(got[0], 413)
        self.problem(verify("{"), 400, "malformed-json")
        self.problem(verify("[]"), 400, "malformed-json")
        self.problem(verify('{"code": "x"}', "text/plain"), 415,
                     "unsupported-media-type")
        for body, field, code in (
                ({}, "code", "required"),
                ({"code": 7}, "code", "wrong-type"),
                ({"code": ""}, "code", "too-short"),
                ({"code": "x" * 200}, "code", "too-long"),
                ({"code": "x", "seat": "A1"}, "seat", "unknown-field")):
            doc = self.problem(verify(json.dumps(body)), 422,
                               "validation-failed")
            self.assertEqual([(e["field"], e["code"]) for e in doc["errors"]],
                             [(field, code)])

        def admin(query, headers=ADMIN, on=svc):
            got = on.request("GET", f"/admin/deliveries{query}",
                             headers=headers)
            self.check("GET", "/admin/deliveries", *got)
            return got

        self.problem(admin("?customer=owner", headers={}), 401,
                     "unauthorized")
        self.problem(admin("?customer=owner",
                           headers={"Authorization": "Bearer nope"}), 401,
                     "unauthorized")
        for query in ("", "?customer=", "?customer=a%20b",
                      "?customer=owner&limit=0",
                      "?customer=owner&limit=101",
                      "?customer=owner&after=-1",
                      "?customer=owner&after=x", "?customer=%zz"):
            self.problem(admin(query), 400, "invalid-query")

        # Paging.
        self.publish(confirmed("b-2", "80-b2", customer="owner"))
        self.wait_ticket(svc, "80-b2", customer="owner")
        status, _, body = admin("?customer=owner&limit=1")
        page = json.loads(body)
        self.assertEqual(len(page["deliveries"]), 1)
        self.assertIsNotNone(page["next_after"])
        _, _, body = admin(f"?customer=owner&after={page['next_after']}")
        rest = json.loads(body)
        self.assertEqual([d["booking_id"] for d in rest["deliveries"]],
                         ["80-b2"])
        self.assertIsNone(rest["next_after"])

        # With no admin token the admin routes are off.
        off = self.start(**{"notify.admin_token": "",
                            "mq.path": os.path.join(self.tmp, "q2.db")})
        self.problem(admin("?customer=owner", on=off), 403, "admin-disabled")

    def test_customer_is_believed_only_from_the_gateway(self):
        secret = "gateway-secret-for-notify-tests"
        svc = self.start(**{"http.gateway_secret": secret})
        self.publish(confirmed("g-1", "85-b1"))
        vouched = {"X-Customer-Id": "cust-1", "X-Gateway-Secret": secret}
        wait_until("the ticket", lambda: svc.request(
            "GET", "/v1/tickets/85-b1", headers=vouched)[0] == 200)
        for path in ("/v1/tickets/85-b1", "/v1/tickets/85-b1/qr.svg"):
            for headers in ({"X-Customer-Id": "cust-1"},
                            {"X-Customer-Id": "cust-1",
                             "X-Gateway-Secret": secret[:-1] + "X"}):
                got = svc.request("GET", path, headers=headers)
                self.check("GET", path, *got)
                self.problem(got, 403, "untrusted-customer")
            got = svc.request("GET", path, headers=vouched)
            self.check("GET", path, *got)
            self.assertEqual(got[0], 200)
        # The door check names no customer: no secret needed.
        _, _, t = svc.json("GET", "/v1/tickets/85-b1", headers=vouched)
        got = svc.request("POST", "/v1/tickets/verify",
                          body={"code": t["code"]})
        self.assertEqual(got[0], 200)

    def test_ticket_key_is_checked_at_start(self):
        env = dict(os.environ)
        for k, v in SANITIZER_ENV.items():
            env.setdefault(k, v)
        argv = [marquee_bin(), "notify", f"--http.port={free_port()}",
                f"--store.path={self.tmp}/n.db", f"--mq.path={self.queue}",
                "--notify.ticket_key=too-short-a-secret"]
        p = subprocess.run(argv, capture_output=True, text=True, timeout=30,
                           env=env)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn("bad_config key=notify.ticket_key bytes=18", p.stderr)
        for line in p.stderr.splitlines():
            self.assertRegex(line, LINE_RE)
        self.assertNotIn("too-short-a-secret", p.stderr)
        # The documented demo key starts, and says so.
        demo = self.start(**{"notify.ticket_key": "demo"})
        self.assertIn("warn notify: demo_ticket_key", demo.log())


@unittest.skipUnless(rabbit is not None and rabbit.available(),
                     "rabbitmq-server (tests/integration/rabbit.py) absent")
class NotifyOnRabbitTest(NotifyTest):
    """The queue tests again on the RabbitMQ backend: a private broker for
    the class, a virtual host of its own for each test (queues outlive
    their consumers there, as they should)."""

    # Backend-neutral tests (HTTP, codes, keys) need not run twice.
    test_ticket_qr_and_door_check = None
    test_bad_requests_get_precise_problems = None
    test_customer_is_believed_only_from_the_gateway = None
    test_ticket_key_is_checked_at_start = None

    @classmethod
    def setUpClass(cls):
        cls.broker = rabbit.RabbitBroker()
        cls.addClassCleanup(cls.broker.close)
        cls.broker.start()
        cls.vhosts = 0

    def setUp(self):
        super().setUp()
        type(self).vhosts += 1
        self.vhost = f"notify{self.vhosts}"
        self.broker.ctl("add_vhost", self.vhost)
        self.broker.ctl("set_permissions", "-p", self.vhost, "guest", ".*",
                        ".*", ".*")

    def backend_flags(self):
        return ["--mq.backend=rabbitmq",
                f"--mq.url={self.broker.url}{self.vhost}"]


class NotifyWithBookingTest(CheckoutCase):
    """Booking's own events, from its outbox, make the tickets."""

    @classmethod
    def setUpClass(cls):
        cls.platform = Platform()
        try:
            cls.notify = Service("notify", flags={
                "mq.path": cls.platform.queue, "notify.ticket_key": KEY,
                "notify.admin_token": TOKEN, "notify.retry_ms": "100",
                "http.threads": "2"})
        except BaseException:
            cls.platform.close(check=False)
            raise
        # Stopped first, closed with the rest.
        cls.platform.services.append(cls.notify)

    @classmethod
    def tearDownClass(cls):
        cls.platform.close()

    def setUp(self):
        self.platform.dials()

    def ticket(self, booking_id, where):
        def got():
            status, _, body = self.notify.json(
                "GET", f"/v1/tickets/{booking_id}",
                headers={"X-Customer-Id": "cust-1"})
            return body if status == 200 and where(body) else None
        return wait_until(f"the ticket of {booking_id}", got)

    def cancel(self, booking, body=None):
        return self.call("POST", f"/v1/bookings/{booking['id']}/cancel",
                         body, {"X-Customer-Id": "cust-1",
                                "Idempotency-Key": key()}, 200)[1]

    def verify(self, code):
        return self.notify.request("POST", "/v1/tickets/verify",
                                   body={"code": code})

    def test_checkout_ticket_door_and_cancellations(self):
        show = self.platform.new_show(cancellation={
            "until_minutes_before": 60, "fee_percent": 10})
        hold = self.hold(show, ["A1", "A2"])
        _, booking = self.checkout(hold, expect=201)

        ticket = self.ticket(booking["id"], lambda t: True)
        self.assertEqual(ticket["show_id"], show["id"])
        self.assertEqual(ticket["total"], booking["total"])
        self.assertEqual(ticket["seats"], [{"seat": "A1", "state": "valid"},
                                           {"seat": "A2", "state": "valid"}])
        self.assertEqual(self.verify(ticket["code"])[0], 200)

        self.cancel(booking, {"seats": ["A2"]})
        t = self.ticket(booking["id"],
                        lambda t: t["seats"][1]["state"] == "cancelled")
        self.assertEqual((t["status"], t["seats"][0]["state"]),
                         ("valid", "valid"))
        self.cancel(booking)
        t = self.ticket(booking["id"], lambda t: t["status"] == "cancelled")
        self.assertEqual(self.verify(ticket["code"])[0], 409)

        status, _, page = self.notify.json(
            "GET", "/admin/deliveries?customer=cust-1", headers=ADMIN)
        mine = [d for d in page["deliveries"]
                if d["booking_id"] == booking["id"]]
        self.assertEqual([d["kind"] for d in mine],
                         ["tickets", "cancellation", "cancellation"])
        self.assertIn("Refund INR 225.00 (cancellation fee INR 25.00). "
                      "Your ticket stays valid for seats A1.",
                      mine[1]["message"])
        self.assertIn("Your ticket is cancelled.", mine[2]["message"])
        # Booking's event ids are the dedupe keys notify recorded.
        with sqlite3.connect(self.notify.db_path) as db:
            ids = [r[0] for r in db.execute(
                "SELECT id FROM events WHERE booking_id = ? "
                "ORDER BY processed_at, id", (booking["id"],))]
        self.assertEqual(ids[0], f"booking.confirmed.{booking['id']}")
        self.assertEqual(len(ids), 3)
        # The whole path, as the checker sees it: nothing wrong, nothing
        # left in flight.
        summary = self.assert_checked_clean(self.notify.db_path)
        self.assertGreaterEqual(summary["checked"]["tickets"], 1)

    def metric(self, outcome):
        _, _, text = self.notify.request("GET", "/metrics")
        m = re.search(r'^marquee_notify_events_total\{outcome="%s"\} (\d+)$'
                      % outcome, text.decode(), re.M)
        return int(m.group(1)) if m else 0

    def test_kill_notify_between_ticket_and_ack(self):
        # Notify restarted to pause between its commit and its ack, with
        # a lease short enough for the redelivery to come in seconds.
        notify = self.notify
        plain = list(notify.args)
        self.assertEqual(notify.stop(), 0)
        notify.args = plain + ["--notify.ack_delay_ms=6000",
                               "--mq.lease_ms=2500"]
        try:
            notify.start()
            show = self.platform.new_show()
            hold = self.hold(show, ["B5", "B6"])
            _, booking = self.checkout(hold, expect=201)
            # Readable: committed; the ack is seconds away.
            first = self.ticket(booking["id"], lambda t: True)
            notify.kill()
            mine = [e for e in self.platform.events("booking.confirmed")
                    if booking["id"] in e[2]]
            self.assertEqual(len(mine), 1, "the event is not acked")

            notify.args = plain + ["--mq.lease_ms=2500"]
            notify.start()
            # The lease ends, the event comes again: a duplicate, acked.
            wait_until("the redelivered event is a duplicate",
                       lambda: self.metric("duplicate") >= 1)
            wait_until("the redelivered event is acked", lambda: not [
                e for e in self.platform.events("booking.confirmed")
                if booking["id"] in e[2]])
            self.assertEqual(self.metric("issued"), 0)
        finally:
            if notify.proc is not None:
                notify.stop()
            notify.args = plain
            notify.start()
        self.assertEqual(query(notify.db_path,
                               "SELECT id FROM tickets WHERE booking_id = ?",
                               (booking["id"],)), [(first["ticket_id"],)])
        self.assertEqual(self.ticket(booking["id"], lambda t: True)["code"],
                         first["code"])
        summary = self.assert_checked_clean(notify.db_path)
        self.assertGreaterEqual(summary["checked"]["tickets"], 1)


if __name__ == "__main__":
    unittest.main()
