"""The payment service, `marquee payment`, against docs/api/payment.yaml.

A real payment process (the ASan build) with its simulated card provider
answers every route and every error a client can provoke; each answer is
checked with ApiSchema.  The provider's dials (PUT /admin/provider) hold a
call in flight, fail it, time it out or take the provider down; the card
tokens tok_decline, tok_fail and tok_timeout decide an outcome for
certain.  Crash tests kill the process with SIGKILL in the middle of a
burst of charges and check, after a restart, that every 201 a client got
is readable, that each attempt was charged at most once, and that the
ledger adds up.
"""

import sqlite3
import threading
import time
import unittest
import uuid

from support import ApiSchema, Service

TOKEN = "payment-test-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
MAX_BODY_BYTES = 4096
# Fast and steady by default; tests that need a slow provider dial it,
# below payment.provider_timeout_ms unless they want a timeout.
DIALS = {"latency_ms": 5, "jitter_ms": 0, "failure_rate": 0.0,
         "decline_rate": 0.0, "timeout_rate": 0.0, "outage": False}
FLAGS = {"payment.admin_token": TOKEN,
         "payment.provider.latency_ms": "5",
         "payment.provider.jitter_ms": "0",
         "payment.provider_timeout_ms": "800",
         "http.max_body_bytes": str(MAX_BODY_BYTES),
         "http.threads": "2"}
WAIT_S = 10.0
BURST_THREADS = 6
BURST_PER_THREAD = 40
# Charges acknowledged before the kill; the rest are in flight or unsent.
BURST_ACKS_BEFORE_KILL = 100


def api():
    return ApiSchema.for_file("payment.yaml")


def key():
    return "k-" + uuid.uuid4().hex


def ref():
    return "hold-" + uuid.uuid4().hex[:16]


def charge_body(amount=90000, currency="INR", reference=None,
                token="tok_visa", customer="cust-42"):
    return {"amount": amount, "currency": currency,
            "reference": reference or ref(), "customer_id": customer,
            "card": {"token": token}}


class PaymentCase(unittest.TestCase):
    """Requests checked against payment.yaml."""

    svc = None

    def call(self, method, path, body=None, headers=None, expect=None,
             ptype=None, svc=None, documented_as=None):
        """One request, checked against the description; returns (headers,
        parsed body or None).  expect is the status wanted, ptype the
        problem slug wanted.  A 405 is documented under a method the path
        has: documented_as names it."""
        svc = svc or self.svc
        status, got, raw = svc.request(method, path, body, headers)
        data = api().check(documented_as or method, path.split("?")[0],
                           status, got, raw)
        where = f"{method} {path} -> {status}: {raw[:600]!r}"
        if expect is not None:
            self.assertEqual(status, expect, where)
        if status >= 400 and isinstance(data, dict):
            self.assertEqual(got.get("content-type"),
                             "application/problem+json", where)
            self.assertEqual(data["status"], status, where)
            if ptype is not None:
                self.assertEqual(data["type"], f"/problems/{ptype}", where)
        return got, data

    def charge(self, body, idem=None, expect=None, ptype=None, svc=None):
        headers = {"Idempotency-Key": idem} if idem else {}
        return self.call("POST", "/v1/charges", body, headers, expect, ptype,
                         svc)

    def refund(self, body, idem, expect=None, ptype=None):
        return self.call("POST", "/v1/refunds", body,
                         {"Idempotency-Key": idem}, expect, ptype)

    def dials(self, svc=None, **changes):
        return self.call("PUT", "/admin/provider", changes, ADMIN, 200,
                         svc=svc)[1]

    def ledger(self, svc=None):
        data = self.call("GET", "/admin/ledger", None, ADMIN, 200, svc=svc)[1]
        self.assertTrue(data["refunds_match"], data)
        return {row["currency"]: row for row in data["currencies"]}

    def by_reference(self, reference, svc=None):
        return self.call("GET", f"/v1/charges?reference={reference}",
                         expect=200, svc=svc)[1]["charges"]


class PaymentApiTest(PaymentCase):

    @classmethod
    def setUpClass(cls):
        cls.svc = Service("payment", flags=FLAGS)

    @classmethod
    def tearDownClass(cls):
        code = cls.svc.stop()
        cls.svc.close()
        assert code == 0, code

    def setUp(self):
        self.dials(**DIALS)

    # ------------------------------------------------------------ charges

    def test_charge_succeeds_and_reads_back(self):
        body = charge_body(amount=123456, currency="EUR")
        got, charge = self.charge(body, key(), 201)
        self.assertEqual(got["location"], f"/v1/charges/{charge['id']}")
        self.assertEqual(charge["status"], "succeeded")
        for field in ("amount", "currency", "reference", "customer_id"):
            self.assertEqual(charge[field], body[field], field)
        self.assertEqual(charge["refunded"], 0)
        self.assertNotIn("idempotent-replayed", got)

        _, read = self.call("GET", got["location"], expect=200)
        self.assertEqual(read, charge)
        self.assertEqual(self.by_reference(body["reference"]), [charge])

    def test_replay_returns_the_same_charge_once(self):
        body, idem = charge_body(), key()
        before = self.ledger().get("INR", {"charged": 0, "charges": 0})
        _, first = self.charge(body, idem, 201)
        for _ in range(3):
            got, again = self.charge(body, idem, 201)
            self.assertEqual(got.get("idempotent-replayed"), "true")
            self.assertEqual(got["location"], f"/v1/charges/{first['id']}")
            self.assertEqual(again, first)
        self.assertEqual(self.by_reference(body["reference"]), [first])
        after = self.ledger()["INR"]
        self.assertEqual(after["charged"] - before["charged"], body["amount"])
        self.assertEqual(after["charges"] - before["charges"], 1)

    def test_repeat_right_after_the_answer_is_replayed(self):
        # Repeated as soon as its answer arrived, an attempt gets that
        # answer again, never "in flight": four threads at once, so the
        # repeat often reaches another HTTP thread than the answer's.
        wrong = []

        def client():
            for _ in range(15):
                body, idem = charge_body(), key()
                s1, _, first = self.svc.request("POST", "/v1/charges", body,
                                                {"Idempotency-Key": idem})
                s2, h2, again = self.svc.request("POST", "/v1/charges", body,
                                                 {"Idempotency-Key": idem})
                if (s1, s2) != (201, 201) or again != first or \
                        h2.get("idempotent-replayed") != "true":
                    wrong.append((s1, s2, h2.get("idempotent-replayed")))

        threads = [threading.Thread(target=client) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(wrong, [])

    def test_same_key_other_body_is_refused(self):
        body, idem = charge_body(), key()
        self.charge(body, idem, 201)
        other = dict(body, amount=body["amount"] + 1)
        self.charge(other, idem, 422, "idempotency-key-reused")
        self.assertEqual(len(self.by_reference(body["reference"])), 1)

    def test_same_key_in_flight_is_refused(self):
        self.dials(latency_ms=700)
        body, idem = charge_body(), key()
        first = {}

        def send():
            first["answer"] = self.svc.request(
                "POST", "/v1/charges", body, {"Idempotency-Key": idem})

        sender = threading.Thread(target=send)
        sender.start()
        time.sleep(0.25)
        self.charge(body, idem, 409, "idempotency-key-in-flight")
        sender.join(WAIT_S)
        status, got, raw = first["answer"]
        self.assertEqual(status, 201, raw)
        charge = api().check("POST", "/v1/charges", status, got, raw)
        got, again = self.charge(body, idem, 201)
        self.assertEqual(got.get("idempotent-replayed"), "true")
        self.assertEqual(again["id"], charge["id"])

    def test_decline_then_a_new_key_succeeds(self):
        reference = ref()
        declined, idem = charge_body(reference=reference,
                                     token="tok_decline"), key()
        _, problem = self.charge(declined, idem, 402, "card-declined")
        self.assertEqual(problem["decline_code"], "card_declined")
        got, again = self.charge(declined, idem, 402, "card-declined")
        self.assertEqual(got.get("idempotent-replayed"), "true")
        self.assertEqual(again["charge_id"], problem["charge_id"])

        _, stored = self.call("GET", f"/v1/charges/{problem['charge_id']}",
                              expect=200)
        self.assertEqual(stored["status"], "declined")
        self.assertEqual(stored["decline_code"], "card_declined")

        _, charge = self.charge(charge_body(reference=reference), key(), 201)
        listed = self.by_reference(reference)
        self.assertEqual([c["status"] for c in listed],
                         ["declined", "succeeded"])
        self.assertEqual(listed[1]["id"], charge["id"])

    def test_provider_failure_charges_nothing(self):
        reference = ref()
        before = self.ledger().get("INR", {"charged": 0})["charged"]
        body, idem = charge_body(reference=reference, token="tok_fail"), key()
        _, problem = self.charge(body, idem, 502, "provider-error")
        got, again = self.charge(body, idem, 502, "provider-error")
        self.assertEqual(got.get("idempotent-replayed"), "true")
        self.assertEqual(again["charge_id"], problem["charge_id"])
        [failed] = self.by_reference(reference)
        self.assertEqual((failed["status"], failed["failure_code"]),
                         ("failed", "provider_error"))
        self.assertEqual(self.ledger().get("INR", {"charged": 0})["charged"],
                         before)

        # Failures by the dial, too.
        self.dials(failure_rate=1.0)
        self.charge(charge_body(reference=reference), key(), 502,
                    "provider-error")

    def test_provider_timeout_charges_nothing(self):
        reference = ref()
        body, idem = charge_body(reference=reference,
                                 token="tok_timeout"), key()
        _, problem = self.charge(body, idem, 504, "provider-timeout")
        got, _ = self.charge(body, idem, 504, "provider-timeout")
        self.assertEqual(got.get("idempotent-replayed"), "true")
        # A provider slower than payment.provider_timeout_ms times out.
        self.dials(latency_ms=2000)
        self.charge(charge_body(reference=reference), key(), 504,
                    "provider-timeout")
        statuses = [c["status"] for c in self.by_reference(reference)]
        self.assertEqual(statuses, ["failed", "failed"])
        self.assertTrue(problem["charge_id"].startswith("ch_"))

    def test_provider_outage(self):
        body, idem = charge_body(), key()
        self.dials(outage=True)
        got, _ = self.charge(body, idem, 503, "provider-unavailable")
        self.assertGreaterEqual(int(got["retry-after"]), 1)
        self.assertEqual(self.by_reference(body["reference"]), [])
        # Not stored: the same attempt goes through once the provider is
        # back.
        self.dials(outage=False)
        got, charge = self.charge(body, idem, 201)
        self.assertNotIn("idempotent-replayed", got)
        self.assertEqual(charge["status"], "succeeded")

    def test_decline_rate_dial(self):
        self.dials(decline_rate=1.0)
        _, problem = self.charge(charge_body(), key(), 402, "card-declined")
        self.assertIn(problem["decline_code"],
                      ("card_declined", "insufficient_funds", "do_not_honor",
                       "expired_card"))

    # ------------------------------------------------------------ refunds

    def test_refunds(self):
        _, charge = self.charge(charge_body(amount=10000), key(), 201)
        cid = charge["id"]
        before = self.ledger()["INR"]

        idem = key()
        body = {"charge_id": cid, "amount": 2500, "reason": "seat broken"}
        got, first = self.refund(body, idem, 201)
        self.assertEqual(got["location"], f"/v1/refunds/{first['id']}")
        self.assertEqual((first["amount"], first["currency"],
                          first["charge_id"]), (2500, "INR", cid))
        _, read = self.call("GET", got["location"], expect=200)
        self.assertEqual(read, first)
        # The same attempt again: the same refund, not a second one.
        got, again = self.refund(body, idem, 201)
        self.assertEqual(got.get("idempotent-replayed"), "true")
        self.assertEqual(again, first)
        _, read = self.call("GET", f"/v1/charges/{cid}", expect=200)
        self.assertEqual(read["refunded"], 2500)

        _, problem = self.refund({"charge_id": cid, "amount": 7501,
                                  "reason": "too much"}, key(), 409,
                                 "refund-exceeds-charge")
        self.assertEqual((problem["refunded"], problem["refundable"]),
                         (2500, 7500))
        self.refund({"charge_id": cid, "amount": 7500,
                     "reason": "show cancelled"}, key(), 201)
        self.refund({"charge_id": cid, "amount": 1, "reason": "again"},
                    key(), 409, "refund-exceeds-charge")
        _, read = self.call("GET", f"/v1/charges/{cid}", expect=200)
        self.assertEqual(read["refunded"], 10000)

        after = self.ledger()["INR"]
        self.assertEqual(after["refunded"] - before["refunded"], 10000)
        self.assertEqual(after["net"], after["charged"] - after["refunded"])

    def test_refund_of_declined_or_unknown_charge(self):
        _, problem = self.charge(charge_body(token="tok_decline"), key(), 402)
        self.refund({"charge_id": problem["charge_id"], "amount": 1,
                     "reason": "x"}, key(), 409, "charge-not-refundable")
        self.refund({"charge_id": "ch_0123456789abcdef", "amount": 1,
                     "reason": "x"}, key(), 404, "not-found")

    # ------------------------------------------------------------ bad input

    def test_bad_charge_requests(self):
        idem = {"Idempotency-Key": key()}
        self.charge(charge_body(), None, 400, "idempotency-key-required")
        self.call("POST", "/v1/charges", charge_body(),
                  {"Idempotency-Key": "has space"}, 400,
                  "invalid-idempotency-key")
        self.call("POST", "/v1/charges", '{"amount": 1,', dict(
            idem, **{"Content-Type": "application/json"}), 400,
            "malformed-json")
        self.call("POST", "/v1/charges", "[1]", dict(
            idem, **{"Content-Type": "application/json"}), 400,
            "malformed-json")
        self.call("POST", "/v1/charges", "amount=1", dict(
            idem, **{"Content-Type": "text/plain"}), 415,
            "unsupported-media-type")
        big = charge_body(reference="r" * 100)
        big["customer_id"] = "c" * (MAX_BODY_BYTES + 1)
        self.call("POST", "/v1/charges", big, idem, 413, "payload-too-large")

        cases = [
            ({"amount": "90000"}, "amount", "wrong-type"),
            ({"amount": 1.5}, "amount", "wrong-type"),
            ({"amount": 0}, "amount", "out-of-range"),
            ({"amount": -5}, "amount", "out-of-range"),
            ({"currency": "inr"}, "currency", "invalid-format"),
            ({"currency": "RUPEE"}, "currency", "too-long"),
            ({"currency": 356}, "currency", "wrong-type"),
            ({"reference": ""}, "reference", "too-short"),
            ({"reference": "a b"}, "reference", "invalid-format"),
            ({"customer_id": None}, "customer_id", "wrong-type"),
            ({"card": {"token": "visa"}}, "card.token", "invalid-format"),
            ({"card": {"token": "tok_visa", "cvv": "123"}}, "card.cvv",
             "unknown-field"),
            ({"card": "tok_visa"}, "card", "wrong-type"),
            ({"tip": 5}, "tip", "unknown-field"),
        ]
        for change, field, code in cases:
            with self.subTest(field=field, code=code):
                body = dict(charge_body(), **change)
                _, problem = self.charge(body, key(), 422,
                                         "validation-failed")
                self.assertIn({"field": field, "code": code},
                              [{"field": e["field"], "code": e["code"]}
                               for e in problem["errors"]])
        # Every field at fault is listed at once.
        _, problem = self.charge({"amount": 0, "currency": "x"}, key(), 422)
        fields = {e["field"] for e in problem["errors"]}
        self.assertEqual(fields, {"amount", "currency", "reference",
                                  "customer_id", "card"})

    def test_bad_refund_requests(self):
        self.call("POST", "/v1/refunds", {"charge_id": "ch_0123456789abcdef",
                                          "amount": 1, "reason": "x"},
                  None, 400, "idempotency-key-required")
        _, problem = self.refund({"charge_id": "nope", "amount": -1,
                                  "extra": 1}, key(), 422,
                                 "validation-failed")
        self.assertEqual({(e["field"], e["code"]) for e in problem["errors"]},
                         {("extra", "unknown-field"),
                          ("charge_id", "invalid-format"),
                          ("amount", "out-of-range"),
                          ("reason", "required")})

    def test_reads_not_found_and_bad_queries(self):
        self.call("GET", "/v1/charges/ch_0123456789abcdef", expect=404,
                  ptype="not-found")
        self.call("GET", "/v1/charges/nope", expect=404, ptype="not-found")
        self.call("GET", "/v1/refunds/re_0123456789abcdef", expect=404,
                  ptype="not-found")
        self.call("GET", "/v1/refunds/ch_0123456789abcdef", expect=404,
                  ptype="not-found")
        self.call("GET", "/v1/charges", expect=400, ptype="invalid-query")
        self.call("GET", "/v1/charges?reference=a%20b", expect=400,
                  ptype="invalid-query")
        self.assertEqual(self.by_reference("never-used"), [])
        got, _ = self.call("DELETE", "/v1/charges/ch_0123456789abcdef",
                           expect=405, ptype="method-not-allowed",
                           documented_as="GET")
        self.assertEqual(got["allow"], "GET")

    # ------------------------------------------------------------ admin

    def test_admin_needs_the_token(self):
        for method, path in (("GET", "/admin/provider"),
                             ("PUT", "/admin/provider"),
                             ("GET", "/admin/ledger")):
            body = {} if method == "PUT" else None
            got, _ = self.call(method, path, body, None, 401, "unauthorized")
            self.assertIn("Bearer", got["www-authenticate"])
            self.call(method, path, body, {"Authorization": "Bearer nope"},
                      401, "unauthorized")

    def test_dials_are_validated(self):
        _, before = self.call("GET", "/admin/provider", None, ADMIN, 200)
        _, problem = self.call(
            "PUT", "/admin/provider",
            {"latency_ms": 60001, "jitter_ms": "5", "failure_rate": 1.5,
             "decline_rate": -0.1, "timeout_rate": "0", "outage": 1,
             "colour": "red"}, ADMIN, 422, "validation-failed")
        self.assertEqual({e["field"] for e in problem["errors"]},
                         {"latency_ms", "jitter_ms", "failure_rate",
                          "decline_rate", "timeout_rate", "outage",
                          "colour"})
        _, problem = self.call("PUT", "/admin/provider",
                               {"failure_rate": 0.6, "decline_rate": 0.6},
                               ADMIN, 422, "validation-failed")
        self.assertEqual(len(problem["errors"]), 1)
        _, after = self.call("GET", "/admin/provider", None, ADMIN, 200)
        self.assertEqual(after, before)

        dials = self.dials(latency_ms=7, jitter_ms=3, decline_rate=0.25)
        _, read = self.call("GET", "/admin/provider", None, ADMIN, 200)
        self.assertEqual(read, dials)
        self.assertEqual((read["latency_ms"], read["jitter_ms"],
                          read["decline_rate"]), (7, 3, 0.25))

    def test_metrics(self):
        self.charge(charge_body(), key(), 201)
        self.charge(charge_body(token="tok_decline"), key(), 402)
        status, _, raw = self.svc.request("GET", "/metrics")
        self.assertEqual(status, 200)
        text = raw.decode()
        values = {}
        for line in text.splitlines():
            if line.startswith("marquee_payment_"):
                name, _, value = line.rpartition(" ")
                values[name] = float(value)
        self.assertGreaterEqual(
            values['marquee_payment_charges_total{result="succeeded"}'], 1)
        self.assertGreaterEqual(
            values['marquee_payment_charges_total{result="declined"}'], 1)
        self.assertIn('marquee_payment_charges_total{result="failed"}',
                      values)
        self.assertIn("marquee_payment_refunds_total", values)
        self.assertIn("marquee_payment_provider_queue_depth", values)
        self.assertGreaterEqual(
            values["marquee_payment_provider_latency_seconds_count"], 2)

    def test_health(self):
        self.call("GET", "/healthz", expect=200)
        self.call("GET", "/readyz", expect=200)


class PaymentDurabilityTest(PaymentCase):

    def test_admin_disabled_without_token(self):
        with Service("payment", flags={"http.threads": "1"}) as svc:
            self.call("GET", "/admin/ledger", None, ADMIN, 403,
                      "admin-disabled", svc=svc)

    def test_full_queue_is_refused(self):
        flags = dict(FLAGS, **{"payment.workers": "1",
                               "payment.queue_max": "1",
                               "payment.provider.latency_ms": "750"})
        with Service("payment", flags=flags) as svc:
            answers = []

            def send():
                status, got, raw = svc.request(
                    "POST", "/v1/charges", charge_body(),
                    {"Idempotency-Key": key()})
                body = api().check("POST", "/v1/charges", status, got, raw)
                answers.append((status, got, body))

            senders = [threading.Thread(target=send) for _ in range(4)]
            for s in senders:
                s.start()
                time.sleep(0.05)
            for s in senders:
                s.join(WAIT_S)
            statuses = sorted(a[0] for a in answers)
            self.assertEqual(statuses, [201, 201, 503, 503], answers)
            for status, headers, body in answers:
                if status == 503:
                    self.assertEqual(body["type"], "/problems/unavailable")
                    self.assertIn("retry-after", headers)

    def test_replay_survives_a_restart(self):
        svc = Service("payment", flags=FLAGS)
        try:
            body, idem = charge_body(), key()
            _, charge = self.charge(body, idem, 201, svc=svc)
            rbody, ridem = {"charge_id": charge["id"], "amount": 100,
                            "reason": "x"}, key()
            _, refund = self.call("POST", "/v1/refunds", rbody,
                                  {"Idempotency-Key": ridem}, 201, svc=svc)
            self.assertEqual(svc.stop(), 0)
            svc.start()
            got, again = self.charge(body, idem, 201, svc=svc)
            self.assertEqual(got.get("idempotent-replayed"), "true")
            self.assertEqual(again, charge)
            got, again = self.call("POST", "/v1/refunds", rbody,
                                   {"Idempotency-Key": ridem}, 201, svc=svc)
            self.assertEqual(got.get("idempotent-replayed"), "true")
            self.assertEqual(again, refund)
            self.assertEqual(self.ledger(svc)["INR"]["net"],
                             body["amount"] - 100)
            self.assertEqual(svc.stop(), 0)
        finally:
            svc.close()

    def test_provider_remembers_an_attempt_the_service_lost(self):
        """The database as a crash between the provider's record and the
        service's commit leaves it: the provider has the charge, the
        service has neither the charge nor the answer.  The repeated
        attempt must be recognised by the provider, not charged again."""
        svc = Service("payment", flags=FLAGS)
        try:
            body, idem = charge_body(), key()
            _, first = self.charge(body, idem, 201, svc=svc)
            self.assertEqual(svc.stop(), 0)
            with sqlite3.connect(svc.db_path) as db:
                [(provider_id,)] = db.execute(
                    "SELECT provider_charge_id FROM charges WHERE id = ?",
                    (first["id"],)).fetchall()
                db.execute("DELETE FROM charges WHERE id = ?", (first["id"],))
                db.execute("DELETE FROM idempotency WHERE key = ?", (idem,))
            svc.start()

            # Repeats of the same attempt, while the provider is dialled to
            # decline everything new: the first result stands.
            self.dials(svc, decline_rate=1.0)
            got, again = self.charge(body, idem, 201, svc=svc)
            self.assertNotIn("idempotent-replayed", got)
            self.assertEqual(self.by_reference(body["reference"], svc=svc),
                             [again])
            self.assertEqual(svc.stop(), 0)
            with sqlite3.connect(svc.db_path) as db:
                rows = db.execute(
                    "SELECT provider_charge_id FROM charges WHERE "
                    "reference = ?", (body["reference"],)).fetchall()
                calls = db.execute(
                    "SELECT count(*) FROM provider_charges WHERE key = ?",
                    (f"charge:{idem}",)).fetchone()[0]
            self.assertEqual(rows, [(provider_id,)])
            self.assertEqual(calls, 1)
        finally:
            svc.close()

    def test_attempt_repeated_after_its_answer_expired(self):
        """A stored answer is kept 24 hours, the provider's record and the
        charge for ever: an attempt repeated later gets its charge back,
        not a second row for the same provider charge."""
        svc = Service("payment", flags=FLAGS)
        try:
            body, idem = charge_body(), key()
            _, first = self.charge(body, idem, 201, svc=svc)
            declined, didem = charge_body(token="tok_decline"), key()
            _, refusal = self.charge(declined, didem, 402, svc=svc)
            self.assertEqual(svc.stop(), 0)
            with sqlite3.connect(svc.db_path) as db:
                db.execute("DELETE FROM idempotency")
            svc.start()

            got, again = self.charge(body, idem, 201, svc=svc)
            self.assertNotIn("idempotent-replayed", got)
            self.assertEqual(again, first)
            _, again = self.charge(declined, didem, 402, "card-declined",
                                   svc=svc)
            self.assertEqual(again["charge_id"], refusal["charge_id"])
            for b in (body, declined):
                self.assertEqual(
                    len(self.by_reference(b["reference"], svc=svc)), 1)
            self.assertEqual(self.ledger(svc)["INR"]["charged"],
                             body["amount"])
            self.assertEqual(svc.stop(), 0)
        finally:
            svc.close()

    def test_kill_during_a_burst(self):
        """SIGKILL while charges are in every stage; after a restart every
        201 is readable, a retry of every attempt charges it at most once,
        and the ledger is the sum of the charges."""
        flags = dict(FLAGS, **{"payment.provider.latency_ms": "20",
                               "payment.provider.jitter_ms": "15"})
        svc = Service("payment", flags=flags)
        attempts = []  # (reference, key, body)
        acked = {}     # key -> charge
        lock = threading.Lock()
        try:
            def burst(n):
                reference = ref()
                for i in range(BURST_PER_THREAD):
                    body = charge_body(amount=1000 + n * 100 + i,
                                       reference=reference)
                    idem = key()
                    with lock:
                        attempts.append((reference, idem, body))
                    try:
                        status, _, charge = svc.json(
                            "POST", "/v1/charges", body,
                            {"Idempotency-Key": idem}, timeout=5)
                    except (OSError, ValueError, AssertionError):
                        return  # the process died under us
                    if status == 201:
                        with lock:
                            acked[idem] = charge

            threads = [threading.Thread(target=burst, args=(n,))
                       for n in range(BURST_THREADS)]
            for t in threads:
                t.start()
            deadline = time.monotonic() + WAIT_S
            while (len(acked) < BURST_ACKS_BEFORE_KILL
                   and time.monotonic() < deadline):
                time.sleep(0.02)
            svc.kill()
            for t in threads:
                t.join(WAIT_S)
            self.assertGreaterEqual(len(acked), BURST_ACKS_BEFORE_KILL)
            svc.start()

            # Every acknowledged charge survived.
            for charge in acked.values():
                _, read = self.call("GET", f"/v1/charges/{charge['id']}",
                                    expect=200, svc=svc)
                self.assertEqual(read, charge)
            # Every attempt again: an acknowledged one replays; the others
            # charge now, or replay what was committed before the kill.
            for _, idem, body in attempts:
                got, charge = self.charge(body, idem, 201, svc=svc)
                if idem in acked:
                    self.assertEqual(got.get("idempotent-replayed"), "true")
                    self.assertEqual(charge, acked[idem])
            # One charge per attempt, and the ledger is their sum.
            references = sorted({r for r, _, _ in attempts})
            listed = [c for r in references
                      for c in self.by_reference(r, svc=svc)]
            self.assertEqual(len(listed), len(attempts))
            self.assertTrue(all(c["status"] == "succeeded" for c in listed))
            total = sum(body["amount"] for _, _, body in attempts)
            inr = self.ledger(svc)["INR"]
            self.assertEqual((inr["charged"], inr["net"], inr["charges"]),
                             (total, total, len(attempts)))
            self.assertEqual(svc.stop(), 0)
        finally:
            svc.close()


if __name__ == "__main__":
    unittest.main()
