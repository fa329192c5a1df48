"""`marquee loadgen` through the gateway as signed-in customers.

A real catalog (demo data), one booking and a gateway with the demo routes
file (holds rate limited per customer, 5/s in bursts of 10) run for the
whole module; booking and the gateway share an http.gateway_secret, so
booking believes a customer only from the gateway.  Passwords are hashed
at the cheapest Argon2id settings (sign-ups are the setup here, not the
subject).

- loadgen with --loadgen.customers=8 signs 8 fresh customers up and in,
  and its holds are created: booking's database holds them under exactly
  those 8 customers (read from the gateway's accounts database), as many
  as loadgen counted 201s, and no hold of a customer name loadgen made up.
- Past the policy's rate, the 429 answers are counted, exactly as many as
  the gateway counted refusals.
- A run that would outlast the access tokens is refused before it starts.
- Pointed at booking itself (not a gateway), the sign-up fails: exit 1,
  with the answer.
- --loadgen.gateway_secret drives that booking directly; the secret is in
  neither the output nor the log.
"""

import json
import os
import sqlite3
import subprocess
import unittest

from support import Service, marquee_bin, repo_path
from test_gateway import GATEWAY_FLAGS, Gateway, addr

DEMO = repo_path("data", "demo", "catalog.json")
SECRET = "loadgen-test-gateway-secret"
LOADGEN_TIMEOUT_S = 90
# Policy of the demo routes' holds: 5 a second per customer, bursts of 10.
HOLD_RATE_PER_CUSTOMER = 5


def demo_routes(catalog, booking):
    """deploy/gateway/routes.json with the test's instances in its pools."""
    with open(repo_path("deploy", "gateway", "routes.json")) as f:
        doc = json.load(f)
    doc["pools"] = {"catalog": {"instances": [addr(catalog)]},
                    "booking": {"instances": [addr(booking)],
                                "balance": "hash"},
                    "notify": {"instances": []}}
    return doc


def metric(svc, name, **labels):
    """The sum of a metric's samples whose labels include these."""
    _, _, text = svc.request("GET", "/metrics")
    total = 0.0
    for line in text.decode().splitlines():
        if not line.startswith((name + "{", name + " ")):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


class LoadgenGatewayTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.services = []
        try:
            cls.catalog = cls.start(Service("catalog", flags={
                "catalog.demo": "true", "catalog.demo_file": DEMO}))
            cls.booking = cls.start(Service("booking", flags={
                "booking.catalog_url": cls.catalog.url,
                "http.gateway_secret": SECRET}))
            cls.gateway = cls.start(Gateway(
                demo_routes(cls.catalog, cls.booking),
                flags={"http.gateway_secret": SECRET,
                       "gateway.cache.max_bytes": "0"}))
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def start(cls, svc):
        cls.services.append(svc)
        return svc

    @classmethod
    def tearDownClass(cls):
        for svc in reversed(cls.services):
            try:
                svc.stop()
            finally:
                svc.close()

    def loadgen(self, target, *flags):
        """Runs loadgen; (exit code, report or None, stderr text)."""
        proc = subprocess.run(
            [marquee_bin(), "loadgen", f"--loadgen.target={target}",
             "--loadgen.hot_show=1", "--loadgen.cold_shows=2-40",
             "--loadgen.connections=4", "--loadgen.seats_per_hold=1",
             *flags],
            cwd=self.booking.tmpdir, env=self.booking.env,
            stdin=subprocess.DEVNULL, capture_output=True,
            timeout=LOADGEN_TIMEOUT_S)
        out, err = proc.stdout.decode(), proc.stderr.decode()
        report = json.loads(out) if proc.returncode == 0 else None
        return proc.returncode, report, err

    def accounts(self, email_prefix):
        """Customer ids of the gateway's accounts whose email starts so."""
        db = sqlite3.connect(
            f"file:{os.path.join(self.gateway.tmpdir, 'gateway.db')}"
            "?mode=ro", uri=True)
        try:
            rows = db.execute(
                "SELECT id FROM accounts WHERE email LIKE ? || '%'",
                (email_prefix,)).fetchall()
        finally:
            db.close()
        return {f"cust-{r[0]}" for r in rows}

    def holds_by_customer(self):
        db = sqlite3.connect(f"file:{self.booking.db_path}?mode=ro", uri=True)
        try:
            rows = db.execute("SELECT customer_id, count(*) FROM holds "
                              "GROUP BY customer_id").fetchall()
        finally:
            db.close()
        return dict(rows)

    def test_holds_belong_to_the_customers_loadgen_signed_in(self):
        before = self.holds_by_customer()
        # 4 holds a second per customer: under the policy, none refused.
        code, report, err = self.loadgen(
            self.gateway.url, "--loadgen.customers=8",
            "--loadgen.rate=32", "--loadgen.duration_s=3",
            "--loadgen.hot_share=0")
        self.assertEqual(code, 0, err)
        self.assertEqual(report["customers"]["count"], 8)
        self.assertGreater(report["customers"]["signup_s"], 0)
        status = report["status"]
        self.assertGreater(status["201"], 40, report)
        self.assertEqual(status["429"], 0, report)
        self.assertEqual(status["4xx_other"], 0, report)
        self.assertEqual(status["5xx"], 0, report)

        mine = self.accounts(report["customers"]["email_prefix"])
        self.assertEqual(len(mine), 8)
        after = self.holds_by_customer()
        new = {c: n - before.get(c, 0) for c, n in after.items()
               if n > before.get(c, 0)}
        # The run's holds are exactly those of the 8 (they take turns, so
        # each made some), as many as loadgen was told were created, and
        # none is by a customer name loadgen made up.
        self.assertEqual(set(new), mine, new)
        self.assertEqual(sum(new.values()), status["201"])

    def test_rate_limit_answers_are_counted(self):
        limited_before = metric(self.gateway,
                                "marquee_gateway_rate_limited_total",
                                policy="holds", mode="enforced")
        # 2 customers at 20 holds a second each: 4 times the policy.
        code, report, err = self.loadgen(
            self.gateway.url, "--loadgen.customers=2",
            "--loadgen.rate=40", "--loadgen.duration_s=2")
        self.assertEqual(code, 0, err)
        status = report["status"]
        self.assertGreater(status["429"], 10, report)
        self.assertGreater(status["201"] + status["409"], 0, report)
        # Each 429 is one of the gateway's refusals, and one answer.
        limited = metric(self.gateway, "marquee_gateway_rate_limited_total",
                         policy="holds", mode="enforced") - limited_before
        self.assertEqual(status["429"], limited)
        self.assertEqual(status["201"] + status["409"] + status["4xx_other"]
                         + status["5xx"] + status["other"],
                         report["latency_ms"]["all"]["count"])
        # Not more holds passed than the policy lets two customers make.
        allowed = 2 * (10 + HOLD_RATE_PER_CUSTOMER * 3)
        self.assertLessEqual(status["201"] + status["409"], allowed, report)

    def test_a_target_that_is_not_a_gateway_is_refused(self):
        code, report, err = self.loadgen(
            self.booking.url, "--loadgen.customers=2",
            "--loadgen.rate=10", "--loadgen.duration_s=1")
        self.assertEqual(code, 1, err)
        self.assertIn("signup_refused step=account status=404", err)
        self.assertIn("not a gateway", err)

    def test_a_run_that_outlasts_the_tokens_is_refused(self):
        # Tokens of 10 s (the gateway's shortest) against a run of 12 s:
        # refused before the first hold, not a run that fails half-way.
        gw = Gateway(demo_routes(self.catalog, self.booking),
                     flags={"http.gateway_secret": SECRET,
                            "gateway.access_token_ttl_s": "10"})
        before = self.holds_by_customer()
        try:
            code, report, err = self.loadgen(
                gw.url, "--loadgen.customers=2", "--loadgen.rate=10",
                "--loadgen.duration_s=12")
            self.assertEqual(code, 1, err)
            self.assertIn("tokens_expire_too_soon", err)
            self.assertEqual(self.holds_by_customer(), before)
        finally:
            gw.stop()
            gw.close()

    def test_gateway_secret_drives_booking_directly(self):
        code, report, err = self.loadgen(
            self.booking.url, f"--loadgen.gateway_secret={SECRET}",
            "--loadgen.rate=20", "--loadgen.duration_s=1")
        self.assertEqual(code, 0, err)
        self.assertGreater(report["status"]["201"], 0, report)
        self.assertEqual(report["status"]["4xx_other"], 0, report)
        self.assertEqual(report["customers"]["count"], 0)
        self.assertNotIn(SECRET, json.dumps(report) + err)
        # Without it, booking believes no customer id.
        code, report, err = self.loadgen(
            self.booking.url, "--loadgen.rate=10", "--loadgen.duration_s=1")
        self.assertEqual(code, 0, err)
        self.assertEqual(report["status"]["201"], 0, report)
        self.assertEqual(report["status"]["4xx_other"],
                         report["latency_ms"]["all"]["count"], report)


if __name__ == "__main__":
    unittest.main()
