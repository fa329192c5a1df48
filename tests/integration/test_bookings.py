"""Bookings: reading, listing, cancelling, and a cancelled show.

The same real processes as test_checkout (catalog, payment, booking and a
SQLite queue).  Cancellations free seats at once and refund through
payment, with the show's fee; a refund payment cannot take now is retried
until it can; a show the catalog cancels cancels every booking with a full
refund, once, however often the event comes.
"""

import json
import signal
import time
import unittest

from test_checkout import (CheckoutCase, Platform, PRICE, future, key,
                           query, wait_until)

ME = {"X-Customer-Id": "cust-1"}


class BookingsTest(CheckoutCase):

    @classmethod
    def setUpClass(cls):
        cls.platform = Platform()

    @classmethod
    def tearDownClass(cls):
        cls.platform.close()

    def setUp(self):
        self.platform.dials()

    def book(self, show, seats, customer="cust-1"):
        hold = self.hold(show, seats, customer)
        return self.checkout(hold, customer=customer, expect=201)[1]

    def cancel(self, booking, body=None, customer="cust-1", expect=None,
               ptype=None, idem=None):
        headers = {"X-Customer-Id": customer,
                   "Idempotency-Key": idem or key()}
        return self.call("POST", f"/v1/bookings/{booking['id']}/cancel",
                         body, headers, expect, ptype)

    def metric(self, name):
        text = self.booking.request("GET", "/metrics")[2].decode()
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return 0.0

    def refunded_at_payment(self, booking):
        return query(self.platform.payment.db_path,
                     "SELECT refunded FROM charges WHERE id = ?",
                     (booking["charge_id"],))[0][0]

    def test_partial_cancellation_keeps_the_fee(self):
        show = self.platform.new_show(cancellation={
            "until_minutes_before": 60, "fee_percent": 10})
        booking = self.book(show, ["A1", "A2"])
        self.assertEqual(booking["cancellation"]["fee_percent"], 10)
        k = key()
        _, after = self.cancel(booking, {"seats": ["A2"]}, idem=k,
                               expect=200)
        self.assertEqual(after["status"], "partially_cancelled")
        self.assertEqual({s["id"]: s["status"] for s in after["seats"]},
                         {"A1": "confirmed", "A2": "cancelled"})
        self.assertEqual(after["refunded"], PRICE - PRICE // 10)
        self.assertEqual(after["fee_retained"], PRICE // 10)
        [refund] = after["refunds"]
        self.assertEqual((refund["amount"], refund["fee"], refund["reason"]),
                         (22500, 2500, "customer"))
        # Replayed, not done twice.
        got, again = self.cancel(booking, {"seats": ["A2"]}, idem=k,
                                 expect=200)
        self.assertEqual(got.get("idempotent-replayed"), "true")
        self.assertEqual(len(again["refunds"]), 1)
        # The seat is free at once; the refund reaches payment.
        self.assertEqual(self.seat_states(show)["A"][:2], "SF")
        self.hold(show, ["A2"], customer="cust-2")
        wait_until("payment refunds 22500",
                   lambda: self.refunded_at_payment(booking) == 22500)
        wait_until("the refund is done", lambda: self.get_booking(
            booking["id"])["refunds"][0]["state"] == "done")
        # The event carries what notify needs.
        rows = wait_until("booking.cancelled in notify.bookings", lambda: [
            r for r in self.platform.events("booking.cancelled")
            if booking["id"] in r[2]])
        event = json.loads(rows[0][2])
        self.assertEqual(event["id"], rows[0][0])
        self.assertEqual((event["seats"], event["remaining_seats"]),
                         (["A2"], ["A1"]))
        self.assertEqual((event["refund"], event["fee"], event["reason"]),
                         (22500, 2500, "customer"))
        self.assertEqual(event["currency"], "INR")
        # Errors, each precise.
        self.cancel(booking, {"seats": ["A2"]}, expect=409,
                    ptype="seats-already-cancelled")
        _, problem = self.cancel(booking, {"seats": ["A1", "B9"]},
                                 expect=422, ptype="validation-failed")
        self.assertEqual([(e["field"], e["code"]) for e in problem["errors"]],
                         [("seats[1]", "not-in-booking")])
        # The rest: all remaining seats by default, then nothing is left.
        _, done = self.cancel(booking, expect=200)
        self.assertEqual(done["status"], "cancelled")
        self.assertEqual(done["refunded"] + done["fee_retained"],
                         done["charged"])
        self.cancel(booking, expect=409, ptype="booking-cancelled")

    def test_outside_the_window(self):
        show = self.platform.new_show(cancellation={
            "until_minutes_before": 10080, "fee_percent": 0})
        booking = self.book(show, ["B1"])
        _, problem = self.cancel(booking, expect=409,
                                 ptype="cancellation-closed")
        self.assertIn("cancellable_until", problem)
        self.assertEqual(self.get_booking(booking["id"])["status"],
                         "confirmed")

    def test_read_list_and_other_customers(self):
        show = self.platform.new_show()
        mine = [self.book(show, [s], "cust-list") for s in ("A5", "A6", "A7")]
        other = self.book(show, ["A8"], "cust-other")
        # Someone else's booking is not found, nor is a malformed id.
        self.get_booking(other["id"], "cust-list", expect=404)
        self.get_booking("nope", "cust-list", expect=404)
        self.cancel(other, customer="cust-list", expect=404, ptype="not-found")
        self.call("GET", f"/v1/bookings/{other['id']}", expect=400)
        # Newest first, two to a page, with a cursor.
        pages, cursor = [], None
        while True:
            path = "/v1/bookings?limit=2" + (f"&cursor={cursor}"
                                             if cursor else "")
            _, page = self.call("GET", path,
                                headers={"X-Customer-Id": "cust-list"},
                                expect=200)
            pages.append([b["id"] for b in page["bookings"]])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        self.assertEqual(pages, [[mine[2]["id"], mine[1]["id"]],
                                 [mine[0]["id"]]])
        for bad in ("limit=0", "limit=101", "limit=x", "cursor=zz",
                    "cursor=12.3-b00"):
            self.call("GET", f"/v1/bookings?{bad}",
                      headers={"X-Customer-Id": "cust-list"}, expect=400,
                      ptype="invalid-query")
        self.call("GET", "/v1/bookings", expect=400, ptype="invalid-customer")

    def test_cancel_bad_requests(self):
        show = self.platform.new_show()
        booking = self.book(show, ["B3"])
        path = f"/v1/bookings/{booking['id']}/cancel"
        self.call("POST", path, None, ME, 400, "idempotency-key-required")
        for body in ({"seats": []}, {"seats": "B3"}, {"seats": [3]},
                     {"seats": ["B3", "B3"]}, {"x": 1}):
            self.call("POST", path, body, dict(ME, **{
                "Idempotency-Key": key()}), 422, "validation-failed")
        self.call("POST", path, "{", dict(ME, **{
            "Idempotency-Key": key(), "Content-Type": "application/json"}),
            400, "malformed-json")
        self.assertEqual(self.get_booking(booking["id"])["status"],
                         "confirmed")

    def test_refund_is_retried_while_payment_is_down(self):
        show = self.platform.new_show()
        booking = self.book(show, ["B5"])
        payment = self.platform.payment
        payment.proc.send_signal(signal.SIGSTOP)
        try:
            _, after = self.cancel(booking, expect=200)
            refund = after["refunds"][0]
            self.assertEqual(refund["state"], "due")
            # The first tries time out; the refund stays due, durably.
            wait_until("a try has failed", lambda: query(
                self.booking.db_path,
                "SELECT attempts FROM refunds WHERE id = ? AND "
                "state = 'due' AND attempts >= 1", (refund["id"],)))
        finally:
            payment.proc.send_signal(signal.SIGCONT)
        wait_until("the refund is done once payment answers", lambda:
                   self.get_booking(booking["id"])["refunds"][0]["state"]
                   == "done")
        # Tried more than once, refunded once: the key is the refund's.
        self.assertEqual(self.refunded_at_payment(booking),
                         PRICE - PRICE // 10)
        self.assertEqual(query(
            self.platform.payment.db_path,
            "SELECT count(*) FROM refunds WHERE charge_id = ?",
            (booking["charge_id"],)), [(1,)])

    def test_show_cancelled_refunds_every_booking(self):
        show = self.platform.new_show(cancellation={
            "until_minutes_before": 60, "fee_percent": 50})
        first = self.book(show, ["A1", "A2"], "cust-a")
        second = self.book(show, ["A3"], "cust-b")
        self.cancel(first, {"seats": ["A2"]}, customer="cust-a", expect=200)
        live_hold = self.hold(show, ["B1"], "cust-c")
        self.platform.admin(f"/v1/admin/shows/{show['id']}/cancel",
                            {"reason": "Projector fire"}, expect=200)

        def cancelled():
            a = self.get_booking(first["id"], "cust-a")
            b = self.get_booking(second["id"], "cust-b")
            return (a["status"] == "cancelled" and b["status"] == "cancelled"
                    and all(r["state"] == "done"
                            for r in a["refunds"] + b["refunds"]))
        wait_until("both bookings cancelled and refunded", cancelled)
        a = self.get_booking(first["id"], "cust-a")
        # The customer's own cancellation kept its fee; the show's, none.
        self.assertEqual([(r["reason"], r["amount"], r["fee"])
                          for r in a["refunds"]],
                         [("customer", PRICE // 2, PRICE // 2),
                          ("show_cancelled", PRICE, 0)])
        b = self.get_booking(second["id"], "cust-b")
        self.assertEqual(b["refunded"], PRICE)
        wait_until("the live hold ended", lambda: self.get_hold(
            live_hold)["status"] == "released")
        # Memory follows: the seat map shows every seat free again.
        wait_until("the seats are free", lambda: self.seat_states(show)[
            "A"][:3] == "FFF" and self.seat_states(show)["B"][0] == "F")
        # Each cancellation has its event, the show's with no fee.
        def events():
            return [json.loads(r[2]) for r in self.platform.events(
                "booking.cancelled") if json.loads(r[2])["show_id"]
                == show["id"]]
        wait_until("three booking.cancelled events",
                   lambda: len(events()) == 3)
        self.assertEqual(sorted((e["reason"], e["fee"]) for e in events()),
                         [("customer", PRICE // 2), ("show_cancelled", 0),
                          ("show_cancelled", 0)])
        # A second show.cancelled event finds nothing left to do.
        self.call("POST", "/internal/v1/show-events", {
            "type": "show.cancelled", "show_id": show["id"], "version": 99},
            expect=202)
        self.call("POST", "/internal/v1/show-events", {
            "type": "show.cancelled", "show_id": show["id"], "version": 99},
            expect=202)
        shown = ('marquee_booking_cancellations_total'
                 '{reason="show_cancelled"}')
        rounds = self.metric(shown)
        time.sleep(1.0)  # several reconcile rounds (200 ms each)
        self.assertEqual(len(events()), 3)
        self.assertEqual(rounds, self.metric(shown))
        self.assertEqual(rounds, 2.0)
        self.assertEqual(query(
            self.booking.db_path,
            "SELECT count(*) FROM refunds r JOIN bookings b ON "
            "b.id = r.booking_id WHERE b.show_id = ?", (show["id"],)),
            [(3,)])
        self.assertEqual(self.refunded_at_payment(first), PRICE * 3 // 2)


if __name__ == "__main__":
    unittest.main()
