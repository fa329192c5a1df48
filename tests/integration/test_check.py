"""marquee check: the invariant checker over the services' databases.

Real processes: a catalog, a payment service, a booking and a notify
sharing a SQLite queue file (as in test_checkout.py and test_notify.py).
A few holds, checkouts and cancellations make a real installation; the
checker must find it clean while it runs, and must not disturb it.  Then
each invariant is broken by hand in a COPY of the databases (sqlite3
UPDATE/INSERT on the copy) and the checker must exit 1 naming exactly the
ids involved.  A booking killed with SIGKILL leaves its WAL behind; the
checker reads the crashed files without changing a byte of them.
"""

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
import threading
import time
import unittest

from support import SANITIZER_ENV, Service, marquee_bin
from test_checkout import CheckoutCase, Platform, key, wait_until

TICKET_KEY = "integration-test-ticket-key-0123456789abcdef"
CHECK_TIMEOUT_S = 60
DBS = ("booking", "payment", "notify")


def run_check(paths, *extra):
    """Runs marquee check; (exit code, findings, summary, stdout, stderr)."""
    args = [marquee_bin(), "check", f"--booking.db={paths['booking']}",
            f"--payment.db={paths['payment']}", "--json", *extra]
    if paths.get("notify"):
        args.append(f"--notify.db={paths['notify']}")
    env = dict(os.environ)
    for k, v in SANITIZER_ENV.items():
        env.setdefault(k, v)
    proc = subprocess.run(args, capture_output=True, text=True, env=env,
                          timeout=CHECK_TIMEOUT_S)
    for mark in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
        assert mark not in proc.stderr, proc.stderr
    findings, summary = [], None
    for line in proc.stdout.splitlines():
        obj = json.loads(line)
        if "summary" in obj:
            summary = obj["summary"]
        elif "invariant" in obj:
            # Every finding names what it is about.
            assert set(obj) - {"invariant", "status", "kind", "detail"}, obj
            findings.append(obj)
    return proc.returncode, findings, summary, proc.stdout, proc.stderr


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def backup(src, dst):
    """A consistent copy of a live database, read through SQLite."""
    source = sqlite3.connect(f"file:{src}?mode=ro", uri=True, timeout=10)
    target = sqlite3.connect(dst)
    try:
        source.backup(target)
    finally:
        target.close()
        source.close()


class CheckTest(CheckoutCase):

    @classmethod
    def setUpClass(cls):
        cls.platform = Platform()
        cls.tmp = tempfile.mkdtemp(prefix="marquee-check-")
        try:
            cls.notify = Service("notify", flags={
                "mq.path": cls.platform.queue,
                "notify.ticket_key": TICKET_KEY,
                "notify.retry_ms": "100", "http.threads": "2"})
            cls.platform.services.append(cls.notify)
            cls.world = cls.make_world()
            cls.pristine = cls.copy_all(os.path.join(cls.tmp, "pristine"))
        except BaseException:
            cls.platform.close(check=False)
            shutil.rmtree(cls.tmp, ignore_errors=True)
            raise

    @classmethod
    def tearDownClass(cls):
        cls.platform.close()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    # ------------------------------------------------------------ the world

    @classmethod
    def make_world(cls):
        """Holds, checkouts and cancellations, then waits until settled."""
        case = cls("test_clean_installation")
        show = cls.platform.new_show(cancellation={
            "until_minutes_before": 60, "fee_percent": 10})
        w = {"show": show}
        hold = case.hold(show, ["A1", "A2"])
        w["partial"] = case.checkout(hold, expect=201)[1]
        case.call("POST", f"/v1/bookings/{w['partial']['id']}/cancel",
                  {"seats": ["A2"]}, {"X-Customer-Id": "cust-1",
                                      "Idempotency-Key": key()}, 200)
        hold = case.hold(show, ["B1"])
        w["full"] = case.checkout(hold, expect=201)[1]
        case.call("POST", f"/v1/bookings/{w['full']['id']}/cancel", None,
                  {"X-Customer-Id": "cust-1", "Idempotency-Key": key()},
                  200)
        hold = case.hold(show, ["B5", "B6"])
        w["kept"] = case.checkout(hold, expect=201)[1]
        declined = case.hold(show, ["A7"])
        case.checkout(declined, token="tok_decline", expect=402)
        released = case.hold(show, ["A8"])
        case.call("DELETE", f"/v1/holds/{released['id']}",
                  headers={"X-Customer-Id": released["customer_id"]},
                  expect=200)
        w["live"] = case.hold(show, ["A4"], customer="cust-2")
        cls.settle(case, 3)
        return w

    @classmethod
    def settle(cls, case, bookings):
        """Every refund done, outbox sent, ticket issued and cancelled."""
        booking = cls.platform.booking.db_path
        notify = cls.notify.db_path

        def q(path, sql):
            con = sqlite3.connect(f"file:{path}?mode=ro", uri=True,
                                  timeout=10)
            try:
                return con.execute(sql).fetchall()
            finally:
                con.close()
        wait_until("refunds done", lambda: q(
            booking, "SELECT count(*) FROM refunds WHERE state = 'due'")
            == [(0,)])
        wait_until("outbox sent", lambda: q(
            booking, "SELECT count(*) FROM outbox WHERE sent_at IS NULL")
            == [(0,)])
        wait_until("tickets issued and seats cancelled", lambda: q(
            notify, "SELECT count(*) FROM tickets")[0][0] >= bookings and q(
            notify, "SELECT count(*) FROM ticket_seats WHERE state = "
            "'cancelled'")[0][0] >= 2)

    @classmethod
    def live_paths(cls):
        return {"booking": cls.platform.booking.db_path,
                "payment": cls.platform.payment.db_path,
                "notify": cls.notify.db_path}

    @classmethod
    def copy_all(cls, where):
        os.makedirs(where, exist_ok=True)
        out = {}
        for name, path in cls.live_paths().items():
            out[name] = os.path.join(where, f"{name}.db")
            backup(path, out[name])
        return out

    def copy(self):
        """Fresh copies of the settled databases, for one test to break."""
        where = tempfile.mkdtemp(dir=self.tmp)
        out = {}
        for name in DBS:
            out[name] = os.path.join(where, f"{name}.db")
            shutil.copyfile(self.pristine[name], out[name])
        return out

    def edit(self, path, *statements):
        con = sqlite3.connect(path)
        try:
            with con:
                for sql, args in statements:
                    con.execute(sql, args)
        finally:
            con.close()

    def broken(self, paths, invariant, kind, *extra):
        """Runs the checker expecting violations; the ones of kind."""
        code, findings, summary, out, err = run_check(paths, "--grace-ms=0",
                                                      *extra)
        self.assertEqual(code, 1, out + err)
        self.assertGreater(summary["violations"][invariant], 0, out)
        return [f for f in findings if f["invariant"] == invariant
                and f["kind"] == kind and f["status"] == "violation"]

    # ------------------------------------------------------------ the tests

    def test_clean_installation(self):
        """The running installation is clean, and the copies are too."""
        for paths in (self.live_paths(), self.copy()):
            code, findings, summary, out, err = run_check(paths)
            self.assertEqual(code, 0, out + err)
            self.assertEqual([f for f in findings
                              if f["status"] == "violation"], [], out)
            self.assertEqual(summary["violations_total"], 0)
            self.assertGreaterEqual(summary["checked"]["bookings"], 3)
            self.assertGreaterEqual(summary["checked"]["tickets"], 3)
            self.assertGreaterEqual(summary["checked"]["live_holds"], 1)
        # Settled: nothing is even pending with no grace at all.
        code, findings, _, out, err = run_check(self.copy(), "--grace-ms=0")
        self.assertEqual((code, findings), (0, []), out + err)
        # The human form: one summary line, exit 0.
        paths = self.copy()
        proc = subprocess.run(
            [marquee_bin(), "check", f"--booking.db={paths['booking']}",
             f"--payment.db={paths['payment']}"],
            capture_output=True, text=True, timeout=CHECK_TIMEOUT_S)
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        self.assertRegex(proc.stdout, r"(?m)^summary violations=0 I1=0 I2=0 "
                         r"I3=0 I4=unchecked I5=0 I6=0 ")
        self.assertRegex(proc.stdout, r"(?m)^money currency=INR "
                         r"payment_net=\d+ kept=\d+ refunds_due=0 ")

    def test_running_installation_is_not_disturbed(self):
        """Checks run while holds are written; both go on unharmed."""
        show = self.platform.new_show()
        seats = [f"{r}{n}" for r in "AB" for n in range(1, 9)][:-1]
        answers, stop = [], threading.Event()

        def holder():
            for i, seat in enumerate(seats):
                if stop.is_set():
                    break
                status, _, _ = self.booking.request(
                    "POST", f"/v1/shows/{show['id']}/holds",
                    {"seats": [seat]},
                    {"X-Customer-Id": f"busy-{i}",
                     "Idempotency-Key": key()})
                answers.append(status)
        t = threading.Thread(target=holder)
        t.start()
        try:
            for _ in range(3):
                code, _, _, out, err = run_check(self.live_paths())
                self.assertEqual(code, 0, out + err)
        finally:
            stop.set()
            t.join()
        self.assertTrue(answers)
        self.assertEqual(set(answers), {201}, answers)
        # The WAL was neither checkpointed away nor removed by the reader,
        # and booking writes on.
        self.assertTrue(os.path.exists(self.booking.db_path + "-wal"))
        self.hold(show, ["B8"], customer="busy-last")

    def test_seat_in_two_holds(self):
        paths = self.copy()
        live = self.world["live"]
        con = sqlite3.connect(paths["booking"])
        row = con.execute(
            "SELECT show_id, seat_idx, seats, total, currency, created_at, "
            "expires_at, max_expires_at FROM holds WHERE id = ?",
            (live["id"],)).fetchone()
        con.close()
        intruder = f"{row[0]}-hintruder"
        self.edit(paths["booking"], (
            "INSERT INTO holds (id, show_id, customer_id, seat_idx, seats, "
            "total, currency, status, created_at, expires_at, "
            "max_expires_at) VALUES (?, ?, 'cust-9', ?, ?, ?, ?, 'active', "
            "?, ?, ?)", (intruder, *row)))
        found = self.broken(paths, "I1", "seat-claimed-twice")
        self.assertEqual(len(found), 1, found)
        self.assertEqual(sorted(found[0]["claims"]),
                         sorted([f"hold:{live['id']}", f"hold:{intruder}"]))
        self.assertEqual(found[0]["seat"], "A4")
        self.assertEqual(found[0]["show_id"], row[0])
        # The seat table has the seat held by the first: the second hold
        # is live without it.
        _, findings, _, _, _ = run_check(paths, "--grace-ms=0")
        i5 = [f for f in findings if f["invariant"] == "I5"]
        self.assertEqual([(f["kind"], f["hold_id"]) for f in i5],
                         [("hold-without-seat", intruder)])

    def test_sold_seat_without_booking(self):
        paths = self.copy()
        show = self.world["show"]["id"]
        self.edit(paths["booking"], (
            "UPDATE seats SET state = 2, booking_id = 'ghost' "
            "WHERE show_id = ? AND idx = 2", (show,)))
        found = self.broken(paths, "I1", "sold-seat-without-booking")
        self.assertEqual([(f["show_id"], f["seat_index"], f["booking_id"])
                          for f in found], [(show, 2, "ghost")])

    def test_charge_without_booking(self):
        paths = self.copy()
        self.edit(paths["payment"], (
            "INSERT INTO charges (id, status, amount, currency, reference, "
            "customer_id, provider_key, provider_charge_id, created_at) "
            "VALUES ('ch_stray', 'succeeded', 777, 'INR', 'nobody.0', "
            "'cust-9', 'charge:nobody.0', 'pc_1', 1)", ()))
        found = self.broken(paths, "I3", "charge-without-attempt")
        self.assertEqual([(f["charge_id"], f["reference"], f["amount"])
                          for f in found], [("ch_stray", "nobody.0", 777)])
        # Money over all is off by exactly that charge.
        money = self.broken(paths, "I6", "money-differs")
        self.assertEqual([m["currency"] for m in money], ["INR"])
        self.assertIn(": 777 apart", money[0]["detail"])

    def test_charge_in_flight_is_pending_then_not(self):
        """A charge booking has not settled: pending, and money with it."""
        paths = self.copy()
        con = sqlite3.connect(paths["booking"])
        intent, amount = con.execute(
            "SELECT id, amount FROM intents WHERE state = 'declined'"
        ).fetchone()
        con.close()
        now_ms = int(time.time() * 1000)
        self.edit(paths["booking"], (
            "UPDATE intents SET state = 'pending', updated_at = ? "
            "WHERE id = ?", (now_ms, intent)))
        self.edit(paths["payment"], (
            "INSERT INTO charges (id, status, amount, currency, reference, "
            "customer_id, provider_key, provider_charge_id, created_at) "
            "VALUES ('ch_late', 'succeeded', ?, 'INR', ?, 'cust-1', ?, "
            "'pc_2', ?)", (amount, intent, "late:" + intent, now_ms)))
        code, findings, summary, out, err = run_check(paths)
        self.assertEqual(code, 0, out + err)
        self.assertEqual(sorted((f["invariant"], f["status"], f["kind"])
                                for f in findings),
                         [("I3", "pending", "charge-not-settled"),
                          ("I6", "pending", "money-unsettled")], out)
        # Past the grace period the same state is a violation.
        found = self.broken(paths, "I3", "charge-not-settled")
        self.assertEqual([(f["charge_id"], f["reference"]) for f in found],
                         [("ch_late", intent)])
        self.assertEqual(len(self.broken(paths, "I6", "money-differs")), 1)

    def test_booking_without_charge(self):
        paths = self.copy()
        kept = self.world["kept"]
        self.edit(paths["payment"], (
            "UPDATE charges SET status = 'failed' WHERE id = ?",
            (kept["charge_id"],)))
        found = self.broken(paths, "I3", "booking-charge-differs")
        self.assertEqual([f["booking_id"] for f in found], [kept["id"]])

    def test_ticket_missing(self):
        paths = self.copy()
        booking = self.world["kept"]["id"]
        self.edit(paths["notify"],
                  ("DELETE FROM ticket_seats WHERE ticket_id IN (SELECT id "
                   "FROM tickets WHERE booking_id = ?)", (booking,)),
                  ("DELETE FROM tickets WHERE booking_id = ?", (booking,)))
        found = self.broken(paths, "I4", "booking-without-ticket")
        self.assertEqual([f["booking_id"] for f in found], [booking])
        # Its event still unsent in booking's outbox: pending, exit 0.
        self.edit(paths["booking"], (
            "UPDATE outbox SET sent_at = NULL WHERE event_id = ?",
            (f"booking.confirmed.{booking}",)))
        code, findings, summary, out, err = run_check(paths, "--grace-ms=0")
        self.assertEqual(code, 0, out + err)
        self.assertEqual([(f["status"], f["booking_id"]) for f in findings],
                         [("pending", booking)])
        self.assertEqual(summary["pending"]["I4"], 1)

    def test_ticket_without_booking(self):
        paths = self.copy()
        self.edit(paths["notify"], (
            "INSERT INTO tickets (id, booking_id, show_id, customer_id, "
            "status, code, total, currency, event_id, issued_at) VALUES "
            "('tk_ghost', '9-bghost', 9, 'cust-9', 'valid', 'x', 1, 'INR', "
            "'e', 1)", ()))
        found = self.broken(paths, "I2", "ticket-without-booking")
        self.assertEqual([(f["ticket_id"], f["booking_id"]) for f in found],
                         [("tk_ghost", "9-bghost")])

    def test_hold_past_maximum_life(self):
        paths = self.copy()
        live = self.world["live"]["id"]
        self.edit(paths["booking"],
                  ("UPDATE holds SET expires_at = max_expires_at + 5000 "
                   "WHERE id = ?", (live,)),
                  ("UPDATE seats SET expires_at = (SELECT expires_at FROM "
                   "holds WHERE id = ?) WHERE hold_id = ?", (live, live)))
        found = self.broken(paths, "I5", "hold-past-maximum")
        self.assertEqual([f["hold_id"] for f in found], [live])
        self.assertIn("5000 ms past", found[0]["detail"])

    def test_extensions_against_the_setting(self):
        paths = self.copy()
        live = self.world["live"]["id"]
        self.edit(paths["booking"], (
            "UPDATE holds SET extensions = 4 WHERE id = ?", (live,)))
        found = self.broken(paths, "I5", "too-many-extensions")
        self.assertEqual([f["hold_id"] for f in found], [live])
        # Booking's own setting, given as booking takes it, allows it.
        code, findings, _, out, err = run_check(
            paths, "--grace-ms=0", "--booking.max_extensions=4")
        self.assertEqual((code, findings), (0, []), out + err)

    def test_seat_held_by_an_ended_hold(self):
        paths = self.copy()
        live = self.world["live"]["id"]
        self.edit(paths["booking"], (
            "UPDATE holds SET status = 'released', ended_at = 1 "
            "WHERE id = ?", (live,)))
        found = self.broken(paths, "I5", "seat-held-by-ended-hold")
        self.assertEqual([f["hold_id"] for f in found], [live])

    def test_refund_sum_wrong(self):
        paths = self.copy()
        partial = self.world["partial"]
        self.edit(paths["booking"], (
            "UPDATE refunds SET amount = amount + 100 WHERE booking_id = ?",
            (partial["id"],)))
        found = self.broken(paths, "I6", "refund-sum-differs")
        self.assertEqual([f["booking_id"] for f in found], [partial["id"]])
        # Payment refunded less than booking now says it did.
        found = self.broken(paths, "I6", "refund-missing-at-payment")
        self.assertEqual([f["charge_id"] for f in found],
                         [partial["charge_id"]])

    def test_booking_value_wrong(self):
        paths = self.copy()
        kept = self.world["kept"]
        self.edit(paths["booking"], (
            "UPDATE booking_seats SET price = price - 1 WHERE booking_id = ? "
            "AND seat = 'B5'", (kept["id"],)))
        found = self.broken(paths, "I6", "booking-sum-differs")
        self.assertEqual([f["booking_id"] for f in found], [kept["id"]])
        self.assertEqual(len(self.broken(paths, "I6", "money-differs")), 1)

    def test_booking_lost(self):
        paths = self.copy()
        kept = self.world["kept"]
        self.edit(paths["booking"],
                  ("DELETE FROM booking_seats WHERE booking_id = ?",
                   (kept["id"],)),
                  ("DELETE FROM bookings WHERE id = ?", (kept["id"],)))
        found = self.broken(paths, "I2", "booking-lost")
        self.assertEqual([f["booking_id"] for f in found], [kept["id"]])
        found = self.broken(paths, "I2", "ticket-without-booking")
        self.assertEqual([f["booking_id"] for f in found], [kept["id"]])
        found = self.broken(paths, "I2", "acknowledged-booking-lost")
        self.assertEqual([f["booking_id"] for f in found], [kept["id"]])

    def test_acknowledged_hold_lost(self):
        paths = self.copy()
        live = self.world["live"]["id"]
        self.edit(paths["booking"],
                  ("UPDATE seats SET state = 0, hold_id = NULL, "
                   "expires_at = 0 WHERE hold_id = ?", (live,)),
                  ("DELETE FROM holds WHERE id = ?", (live,)))
        found = self.broken(paths, "I2", "acknowledged-hold-lost")
        self.assertEqual([(f["hold_id"], f["customer_id"]) for f in found],
                         [(live, "cust-2")])
        _, findings, summary, out, _ = run_check(paths, "--grace-ms=0")
        self.assertEqual(summary["violations_total"], 1, out)

    def test_limit_prints_fewer_and_counts_all(self):
        paths = self.copy()
        show = self.world["show"]["id"]
        self.edit(paths["booking"], (
            "UPDATE seats SET state = 2, booking_id = 'ghost' "
            "WHERE show_id = ? AND idx BETWEEN 8 AND 11", (show,)))
        code, findings, summary, out, _ = run_check(paths, "--limit=1")
        self.assertEqual(code, 1)
        self.assertEqual(len([f for f in findings if f["invariant"] == "I1"]),
                         1, out)
        self.assertEqual(summary["violations"]["I1"], 4)

    def test_crashed_booking_is_read_as_it_lies(self):
        """SIGKILL leaves a WAL; the check reads it and changes nothing."""
        show = self.platform.new_show()
        hold = self.hold(show, ["A3"])
        booking = self.checkout(hold, expect=201)[1]
        src = self.booking.db_path
        where = tempfile.mkdtemp(dir=self.tmp)
        self.booking.kill()
        try:
            paths = {"booking": os.path.join(where, "booking.db"),
                     "payment": os.path.join(where, "payment.db"),
                     "notify": os.path.join(where, "notify.db")}
            for suffix in ("", "-wal"):
                shutil.copyfile(src + suffix, paths["booking"] + suffix)
        finally:
            self.booking.start()
        backup(self.platform.payment.db_path, paths["payment"])
        backup(self.notify.db_path, paths["notify"])
        self.assertGreater(os.path.getsize(paths["booking"] + "-wal"), 0)
        before = {s: digest(paths["booking"] + s) for s in ("", "-wal")}
        code, findings, summary, out, err = run_check(paths)
        self.assertEqual(code, 0, out + err)
        self.assertEqual(
            {s: digest(paths["booking"] + s) for s in ("", "-wal")}, before)
        # The booking acknowledged just before the kill was read.
        con = sqlite3.connect(f"file:{paths['booking']}?mode=ro", uri=True)
        n = con.execute("SELECT count(*) FROM bookings WHERE id = ?",
                        (booking["id"],)).fetchone()[0]
        total = con.execute("SELECT count(*) FROM bookings").fetchone()[0]
        con.close()
        self.assertEqual(n, 1)
        self.assertEqual(summary["checked"]["bookings"], total)

    def test_unreadable_databases_and_misuse(self):
        paths = self.copy()
        missing = dict(paths, payment=os.path.join(self.tmp, "nope.db"))
        code, _, _, out, err = run_check(missing)
        self.assertEqual(code, 2, out + err)
        self.assertIn("cannot read the payment database", err)
        self.assertIn("No such file or directory", err)
        junk = os.path.join(self.tmp, "junk.db")
        with open(junk, "w") as f:
            f.write("not a database, just words\n" * 200)
        code, _, _, out, err = run_check(dict(paths, notify=junk))
        self.assertEqual(code, 2, out + err)
        self.assertIn("not a database", err)
        # Databases swapped: booking's is not payment's.
        code, _, _, out, err = run_check(
            dict(paths, payment=paths["booking"], booking=paths["payment"]))
        self.assertEqual(code, 2, out + err)
        self.assertIn("has no table", err)
        for bad in (["--grace-ms=-1"], ["--limit=x"], ["--frobnicate"],
                    ["stray"]):
            code, _, _, out, err = run_check(paths, *bad)
            self.assertEqual(code, 2, (bad, out, err))
        proc = subprocess.run([marquee_bin(), "check"], capture_output=True,
                              text=True, timeout=CHECK_TIMEOUT_S)
        self.assertEqual(proc.returncode, 2)
        self.assertIn("--booking.db and --payment.db are required",
                      proc.stderr)


if __name__ == "__main__":
    unittest.main()
