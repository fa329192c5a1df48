"""`marquee up` and `marquee status` with real processes.

Each class starts one `marquee up` (the binary under test, every role a
real child process with its own SQLite files in a temp directory) with
short intervals set through its configuration keys, and checks what an
operator relies on:

- UpSupervisionTest: the whole platform (gateway, two catalogs, two
  bookings, payment, notify). kill -9 of an instance of each role under a
  light load of reads through the gateway: each comes back with a new pid,
  rejoins its pool, and no read failed; SIGSTOP makes an instance miss its
  readiness checks, so up kills and restarts it; `marquee status` prints
  the instances; SIGTERM to up stops every process it started, gateway
  first.
- UpCrashLoopTest: a role started with a bad flag exits at once, again and
  again: the restarts are reported as a crash loop (log line, metric) and
  spaced by the cap instead of retried fast.
- UpAutoscaleTest: a ramp of holds by `marquee loadgen` through up's
  gateway, as customers it signed up there, makes booking scale up; once
  the load stops it scales down only after the stabilisation window,
  without flapping, every decision recorded; the instance that leaves is
  drained, and slow requests in flight through it all succeed.
"""

import glob
import json
import os
import random
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request

from support import (HOST, SANITIZER_ENV, SANITIZER_MARKS, describe_exit,
                     free_port, marquee_bin, repo_path)
from test_logs import LINE_RE

TOKEN = "up-test-token"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 40.0
POLL_S = 0.1
DEMO_FILE = repo_path("data", "demo", "catalog.json")

# The gateway notices instances quickly, so rejoining takes a second; its
# response cache is off, so every read reaches an instance.
GATEWAY_FLAGS = {
    "gateway.cache.max_bytes": 0,
    "gateway.health.interval_ms": 200,
    "gateway.health.fast_interval_ms": 100,
    "gateway.health.rise": 1,
    "gateway.health.slow_start_ms": 0,
    "gateway.static_dir": repo_path("web"),
}


def http_get(url, timeout=5.0, headers=None):
    """(status, body bytes); an HTTP error status is returned, not raised."""
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for this purpose: only its parent has not reaped it.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


class Up:
    """One `marquee up` in a temp directory, with its own ports."""

    def __init__(self, topology, **flags):
        self.tmpdir = tempfile.mkdtemp(prefix="marquee-up-")
        self.data_dir = os.path.join(self.tmpdir, "var")
        self.topology_path = os.path.join(self.tmpdir, "topology.json")
        with open(self.topology_path, "w") as f:
            json.dump(topology, f)
        self.admin_port = free_port()
        self.gateway_port = free_port()
        # A range of ports away from the ephemeral ones; up skips any
        # taken.
        self.port_base = random.randrange(20000, 30000, 50)
        self.log_path = os.path.join(self.tmpdir, "up.log")
        self.flags = {
            "http.port": self.admin_port,
            "http.threads": 1,
            "up.gateway_port": self.gateway_port,
            "up.port_base": self.port_base,
            "up.port_count": 50,
            "up.data_dir": self.data_dir,
            "up.admin_token": TOKEN,
            "up.routes": repo_path("deploy", "gateway", "routes.json"),
            "up.log_level": "info",
            "up.check_interval_ms": 300,
            "up.check_timeout_ms": 1000,
            "up.check_failures": 3,
            "up.backoff_base_ms": 100,
            "up.backoff_cap_ms": 2000,
            "up.stop_timeout_ms": 10000,
            "up.drain_timeout_ms": 8000,
        }
        self.flags.update(flags)
        self.pids_seen = set()
        self.proc = None
        self.failed = False

    @property
    def admin(self):
        return f"http://{HOST}:{self.admin_port}"

    @property
    def gateway(self):
        return f"http://{HOST}:{self.gateway_port}"

    def start(self):
        argv = [marquee_bin(), "up", self.topology_path] + [
            f"--{k}={v}" for k, v in self.flags.items()]
        env = dict(os.environ)
        for key, value in SANITIZER_ENV.items():
            env.setdefault(key, value)
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(argv, cwd=self.tmpdir, env=env,
                                     stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.fail(f"up exited early with "
                          f"{describe_exit(self.proc.returncode)}")
            try:
                if http_get(self.admin + "/readyz", timeout=1)[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(POLL_S)
        self.fail("up not ready in time")

    def fail(self, message):
        self.failed = True
        raise AssertionError(f"{message}\n--- {self.log_path}:\n"
                             f"{self.log_tail()}")

    def log_text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def log_tail(self, n=40):
        return "\n".join(self.log_text().splitlines()[-n:])

    def status(self):
        status, body = http_get(self.admin + "/status")
        assert status == 200, status
        doc = json.loads(body)
        for role in doc["roles"]:
            for inst in role["instances"]:
                if inst["pid"] > 0:
                    self.pids_seen.add(inst["pid"])
        return doc

    def instances(self, role=None):
        return {i["name"]: i for r in self.status()["roles"]
                for i in r["instances"] if role in (None, r["role"])}

    def wait(self, what, check, timeout=30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            time.sleep(POLL_S)
        self.fail(f"timed out waiting for {what}")

    def joined(self, name):
        """Whether the instance is in the registry and the gateway, in a
        view of its pools taken since, has it up and not ejected.  Both come
        from one status document: an instance that died rejoins only after
        a view without it, so a view that shows it up is a fresh one."""
        doc = self.status()
        inst = [i for r in doc["roles"] for i in r["instances"]
                if i["name"] == name][0]
        if not inst["in_registry"]:
            return False
        for pool in doc.get("pools") or []:
            for seen in pool["instances"]:
                if seen["address"] == inst["address"]:
                    return seen["health"] == "up" and not seen["ejected"]
        return False

    def metrics(self):
        return http_get(self.admin + "/metrics")[1].decode()

    def stop(self):
        """SIGTERM; returns the exit code; fails past STOP_TIMEOUT_S."""
        if self.proc is None:
            return None
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            self.fail("up did not stop within its bound")
        self.proc = None
        self.log.close()
        return code

    def sanitizer_reports(self):
        found = []
        for path in [self.log_path] + glob.glob(
                os.path.join(self.data_dir, "logs", "*.log")):
            with open(path, "rb") as f:
                text = f.read().decode("utf-8", "replace")
            if any(mark in text for mark in SANITIZER_MARKS):
                found.append(path)
        return found

    def close(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.log.close()
        for pid in self.pids_seen:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
        if self.failed or os.environ.get("MARQUEE_KEEP_TMP"):
            print(f"test_up: kept {self.tmpdir}")
        else:
            shutil.rmtree(self.tmpdir, ignore_errors=True)


class Reader(threading.Thread):
    """Reads through the gateway until stopped; keeps every failure."""

    def __init__(self, base, paths, pause_s=0.02, timeout=10.0):
        super().__init__(daemon=True)
        self.base, self.paths, self.pause_s = base, paths, pause_s
        self.timeout = timeout
        self.halt = threading.Event()
        self.ok = 0
        self.failures = []

    def run(self):
        i = 0
        while not self.halt.is_set():
            path = self.paths[i % len(self.paths)]
            i += 1
            try:
                status, body = http_get(self.base + path, self.timeout)
            except OSError as e:
                status, body = None, str(e).encode()
            if status == 200:
                self.ok += 1
            else:
                self.failures.append((time.strftime("%H:%M:%S"), path, status,
                                      body[:120]))
            if self.pause_s:
                time.sleep(self.pause_s)

    def stop(self):
        self.halt.set()
        self.join(timeout=30)


class UpSupervisionTest(unittest.TestCase):
    """The whole platform under up: restarts after kill -9 and SIGSTOP."""

    TOPOLOGY = {
        "roles": {
            "payment": {"instances": 1},
            "notify": {"instances": 1},
            "booking": {"instances": 2},
            "catalog": {"instances": 2,
                        "flags": {"catalog.demo": True,
                                  "catalog.demo_file": DEMO_FILE}},
            "gateway": {"flags": GATEWAY_FLAGS},
        }
    }

    @classmethod
    def setUpClass(cls):
        cls.up = Up(cls.TOPOLOGY, **{"up.scale_interval_ms": 60000})
        try:
            cls.up.start()
        except BaseException:
            cls.up.close()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.up.close()

    def restart_after(self, name, sig):
        """Sends sig to an instance; waits until it runs again, ready."""
        before = self.up.instances()[name]
        os.kill(before["pid"], sig)

        def back():
            inst = self.up.instances().get(name)
            return (inst is not None and inst["state"] == "ready"
                    and inst["pid"] != before["pid"]
                    and inst["restarts"] == before["restarts"] + 1 and inst)
        return self.up.wait(f"{name} restarted", back)

    def test_a_kill9_of_each_role_restarts_it_and_no_read_fails(self):
        reader = Reader(self.up.gateway,
                        ["/v1/shows/1", "/v1/shows/27/seats"])
        reader.start()
        try:
            time.sleep(0.5)
            for name in ("catalog-2", "booking-1", "booking-2", "catalog-1",
                         "payment-1", "notify-1"):
                inst = self.restart_after(name, signal.SIGKILL)
                self.assertEqual(inst["last_exit"], "signal 9")
                if name.startswith(("catalog", "booking")):
                    # Back in the gateway's pool, taking requests.
                    self.up.wait(f"{name} up in its pool",
                                 lambda: self.up.joined(name))
        finally:
            reader.stop()
        self.assertGreater(reader.ok, 50)
        self.assertEqual(reader.failures, [],
                         "reads through the gateway failed while instances "
                         "were killed")
        text = self.up.log_text()
        self.assertIn("instance_exited instance=booking-1 status=\"signal 9\"",
                      text)
        self.assertRegex(self.up.metrics(),
                         r'marquee_supervisor_restarts_total\{role="booking",'
                         r'reason="exit"\} 2')

    def test_b_gateway_killed_comes_back_and_serves(self):
        self.restart_after("gateway-1", signal.SIGKILL)
        self.up.wait("the gateway serving again", lambda: (
            http_get(self.up.gateway + "/v1/shows/1")[0] == 200))
        # up reads the new gateway's pools again.
        self.up.wait("a fresh view of the pools", lambda: (
            self.up.status().get("pools_age_ms", 99999) < 1500))
        # Its routes file was written again with the instances of now.
        with open(os.path.join(self.up.data_dir,
                               "gateway.routes.json")) as f:
            pools = json.load(f)["pools"]
        self.assertEqual(len(pools["booking"]["instances"]), 2)
        self.assertEqual(len(pools["catalog"]["instances"]), 2)

    def test_c_sigstop_is_killed_and_restarted(self):
        inst = self.restart_after("booking-2", signal.SIGSTOP)
        self.assertEqual(inst["last_exit"], "signal 9")
        self.assertIn("instance_unresponsive instance=booking-2",
                      self.up.log_text())
        self.assertRegex(self.up.metrics(),
                         r'marquee_supervisor_restarts_total\{role="booking",'
                         r'reason="unresponsive"\} 1')
        self.up.wait("booking-2 up in its pool",
                     lambda: self.up.joined("booking-2"))

    def test_d_status_command(self):
        out = subprocess.run(
            [marquee_bin(), "status", f"--status.url={self.up.admin}"],
            capture_output=True, text=True, timeout=30)
        self.assertEqual(out.returncode, 0, out.stderr)
        for word in ("INSTANCE", "gateway-1", "booking-2", "catalog-1",
                     "payment-1", "notify-1", "RECENT SCALING DECISIONS"):
            self.assertIn(word, out.stdout)
        # Routed instances show the gateway's view: up, closed breaker.
        self.assertRegex(out.stdout, r"booking-1 +127\.0\.0\.1:\d+ +ready .* "
                                     r"up +\d+ +closed")

    def test_e_secrets_stay_off_command_lines(self):
        # A command line is readable by every local user; the admin token
        # and the gateway's secrets travel in the children's environment.
        admin_roles = {"gateway", "catalog", "payment", "notify"}
        for inst in self.up.instances().values():
            pid, role = inst["pid"], inst["name"].rsplit("-", 1)[0]
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            self.assertFalse([a for a in argv if TOKEN.encode() in a
                              or b"secret" in a or b"admin_token" in a],
                             argv)
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = dict(e.split(b"=", 1) for e in f.read().split(b"\0")
                           if b"=" in e)
            if role in admin_roles:
                key = f"MARQUEE_{role.upper()}_ADMIN_TOKEN".encode()
                self.assertEqual(env.get(key), TOKEN.encode(), role)
            if role != "payment":
                self.assertGreaterEqual(
                    len(env.get(b"MARQUEE_HTTP_GATEWAY_SECRET", b"")), 16,
                    role)

    def test_e_booking_knows_every_catalog_instance(self):
        # Booking fetches shows from each catalog instance in turn, so one
        # catalog restarting does not stop it learning shows.
        catalogs = sorted(f"http://{i['address']}"
                          for i in self.up.instances("catalog").values())
        self.assertEqual(len(catalogs), 2)
        for inst in self.up.instances("booking").values():
            with open(f"/proc/{inst['pid']}/cmdline", "rb") as f:
                argv = f.read().decode().split("\0")
            given = [a.split("=", 1)[1] for a in argv
                     if a.startswith("--booking.catalog_url=")]
            self.assertEqual(len(given), 1, argv)
            self.assertEqual(sorted(given[0].split(",")), catalogs)
            # Payment is one instance: booking calls it at one URL.
            payment = self.up.instances("payment")["payment-1"]
            self.assertIn(f"--booking.payment_url=http://"
                          f"{payment['address']}", argv)

    def test_z_sigterm_stops_everything_gateway_first(self):
        pids = {i["name"]: i["pid"] for i in self.up.instances().values()}
        code = self.up.stop()
        self.assertEqual(code, 0, self.up.log_tail())
        alive = [pid for pid in self.up.pids_seen | set(pids.values())
                 if pid_alive(pid)]
        self.assertEqual(alive, [], "processes left after up stopped")
        stopped = re.findall(r"instance_stopped instance=([a-z]+)-\d",
                             self.up.log_text())
        self.assertEqual(stopped[0], "gateway")
        # Reverse start order: catalog, booking, notify, payment.
        order = [r for i, r in enumerate(stopped) if r not in stopped[:i]]
        self.assertEqual(order, ["gateway", "catalog", "booking", "notify",
                                 "payment"])
        self.assertEqual(self.up.sanitizer_reports(), [])
        # Every line up logged in this suite's life (starts, kills,
        # registry writes, scaling, the stop) keeps the one-line format;
        # the rest of its output is the start banner on stdout.
        lines = self.up.log_text().splitlines()
        self.assertIn("registry_written", self.up.log_text())
        for line in lines:
            if re.match(r"\d{4}-\d\d-\d\dT", line):
                self.assertRegex(line, LINE_RE)
            else:
                self.assertTrue(line == "" or line.startswith(
                    ("marquee up:", "  ")), f"not a log line: {line!r}")


class UpStartRefusedTest(unittest.TestCase):
    """What up refuses before it starts anything: exit 1 and why."""

    def run_up(self, topology, bin_path=None):
        with tempfile.TemporaryDirectory(prefix="marquee-up-") as tmp:
            path = os.path.join(tmp, "topology.json")
            with open(path, "w") as f:
                f.write(topology if isinstance(topology, str)
                        else json.dumps(topology))
            argv = [marquee_bin(), "up", path, f"--http.port={free_port()}",
                    f"--up.gateway_port={free_port()}",
                    f"--up.data_dir={tmp}/var",
                    f"--up.routes={repo_path('deploy', 'gateway', 'routes.json')}"]
            if bin_path:
                argv.append(f"--up.bin={bin_path}")
            env = dict(os.environ)
            for key, value in SANITIZER_ENV.items():
                env.setdefault(key, value)
            out = subprocess.run(argv, cwd=tmp, env=env, capture_output=True,
                                 text=True, timeout=60)
            self.assertFalse(glob.glob(os.path.join(tmp, "var", "logs", "*")),
                             "nothing may start")
            return out.returncode, out.stderr

    def test_role_missing_from_the_binary(self):
        # A binary whose `--help` lists no notify role, as before it
        # existed: the topology that names notify is refused.
        with tempfile.NamedTemporaryFile("w", suffix=".sh",
                                         delete=False) as f:
            f.write("#!/bin/sh\nprintf 'usage: marquee ROLE\\n\\nroles:\\n"
                    "  gateway    the door\\n  payment    money\\n'\n")
        os.chmod(f.name, 0o755)
        try:
            code, err = self.run_up({"roles": {"notify": {}}}, f.name)
        finally:
            os.unlink(f.name)
        self.assertEqual(code, 1, err)
        self.assertIn("role_missing role=notify", err)

    def test_bad_topologies(self):
        for topology, words in (
                ("{not json", "line 1"),
                ({"roles": {"ticketing": {}}}, "roles.ticketing: unknown role"),
                ({"roles": {"booking": {"flags": {"http.port": 1}}}},
                 "roles.booking.flags.http.port: set by marquee up"),
                ({"roles": {"payment": {"instances": 2}}},
                 "roles.payment: runs exactly one instance"),
                ({"roles": {"booking": {"instances": 5,
                                        "autoscale": {"min": 1, "max": 3,
                                                      "cpu": 1}}}},
                 "roles.booking.instances: must be within autoscale"),
                ({"roles": {"booking": {"autoscale": {"min": 1, "max": 2}}}},
                 "targets: at least one metric"),
                ({"roles": {"notify": {"autoscale": {"queue_depth": 5}}}},
                 "queue and queue_depth go together")):
            with self.subTest(topology=topology):
                code, err = self.run_up(topology)
                self.assertEqual(code, 1, err)
                self.assertIn("topology_refused", err)
                self.assertIn(words, err)


class UpCrashLoopTest(unittest.TestCase):
    """A role that cannot start is backed off to the cap and reported."""

    def test_crash_loop_is_backed_off_and_reported(self):
        topology = {"roles": {
            "payment": {"flags": {"payment.workers": 0}},
            "booking": {},
            "catalog": {"flags": {"catalog.demo": True,
                                  "catalog.demo_file": DEMO_FILE}},
            "gateway": {"flags": GATEWAY_FLAGS},
        }}
        up = Up(topology, **{"up.ready_timeout_ms": 2000,
                             "up.backoff_base_ms": 50,
                             "up.backoff_cap_ms": 1500,
                             "up.crash_loop_restarts": 4,
                             "up.crash_loop_window_ms": 30000})
        try:
            up.start()
            up.wait("payment in a crash loop", lambda: (
                up.instances("payment")["payment-1"]["crash_loop"]),
                timeout=30)
            self.assertRegex(up.metrics(),
                             r'marquee_supervisor_crash_loop\{role="payment"\}'
                             r' 1')
            self.assertIn("crash_loop instance=payment-1", up.log_text())
            # Two more restarts at the cap.
            up.wait("two restarts at the cap", lambda: (
                up.instances("payment")["payment-1"]["restarts"] >= 6),
                timeout=30)
            delays = [int(d) for d in re.findall(
                r"instance_exited instance=payment-1 .*restart_in_ms=(\d+)",
                up.log_text())]
            # Full jitter below the cap first, then the cap itself.
            self.assertTrue(all(d < 1500 for d in delays[:3]), delays)
            self.assertTrue(all(d == 1500 for d in delays[3:]), delays)
            self.assertGreaterEqual(len(delays), 6)
            # The rest of the platform serves meanwhile.
            self.assertEqual(http_get(up.gateway + "/v1/shows/1")[0], 200)
            self.assertEqual(up.stop(), 0)
            self.assertEqual(up.sanitizer_reports(), [])
        finally:
            up.close()


class UpAutoscaleTest(unittest.TestCase):
    """Booking follows its CPU: up at once, down after the window."""

    WINDOW_MS = 8000
    # The ramp: (holds a second, customers) per step.  Customers hold 4 a
    # second each, under the demo routes' 5 a second per customer, so no
    # hold is refused by the rate limit; each is released at once, so the
    # shows never sell out and every hold is a write.
    RAMP = ((40, 10), (80, 20), (160, 40), (240, 60))
    STEP_S = 8
    # Sign-ups are cheap (the gateway hashes at the lowest Argon2id cost).
    LOADGEN_END_S = 30

    def loadgen(self, up, rate, customers):
        argv = [marquee_bin(), "loadgen", f"--loadgen.target={up.gateway}",
                f"--loadgen.rate={rate}", f"--loadgen.customers={customers}",
                f"--loadgen.duration_s={self.STEP_S}",
                "--loadgen.connections=16", "--loadgen.hot_show=1",
                "--loadgen.cold_shows=2-40", "--loadgen.hot_share=0",
                "--loadgen.seats_per_hold=1", "--loadgen.release_share=100",
                "--loadgen.timeout_ms=3000", "--log.level=warn"]
        env = dict(os.environ)
        for key, value in SANITIZER_ENV.items():
            env.setdefault(key, value)
        return subprocess.Popen(argv, cwd=up.tmpdir, env=env,
                                stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)

    def ramp(self, up, count):
        """Steps the rate of holds up until booking has scaled up; returns
        loadgen's reports, one per step run."""
        reports = []
        for rate, customers in self.RAMP:
            proc = self.loadgen(up, rate, customers)
            try:
                while proc.poll() is None and count() < 2:
                    time.sleep(POLL_S * 5)
                if proc.poll() is None:
                    proc.send_signal(signal.SIGINT)  # ends the schedule
                out, err = proc.communicate(timeout=self.LOADGEN_END_S)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.communicate()
            self.assertEqual(proc.returncode, 0, err.decode())
            reports.append(json.loads(out))
            if count() >= 2:
                return reports
        up.fail(f"booking did not scale up under the ramp: {reports}")
        return reports

    def test_scale_up_then_down_after_window_with_drain(self):
        topology = {"roles": {
            "payment": {},
            "booking": {
                "instances": 1,
                "flags": {"http.faults": True},
                "autoscale": {"min": 1, "max": 3, "cpu": 0.08,
                              "down_window_ms": self.WINDOW_MS}},
            "catalog": {"flags": {"catalog.demo": True,
                                  "catalog.demo_file": DEMO_FILE}},
            "gateway": {"flags": dict(GATEWAY_FLAGS, **{
                "gateway.health.timeout_ms": 3000,
                "gateway.password_opslimit": 1,
                "gateway.password_memlimit_kib": 8})},
        }}
        up = Up(topology, **{"up.scale_interval_ms": 1000,
                             "up.check_timeout_ms": 3000})
        try:
            up.start()
            counts = []

            def count():
                n = up.status()["roles"]
                n = [r["count"] for r in n if r["role"] == "booking"][0]
                counts.append(n)
                return n

            reports = self.ramp(up, count)
            # Holds by signed-in customers were made, none refused as
            # unknown customers or over the limit.
            self.assertGreater(sum(r["status"]["201"] for r in reports), 0,
                               reports)
            self.assertEqual(sum(r["status"]["4xx_other"] for r in reports),
                             0, reports)
            stopped_at = time.monotonic()
            up.wait("scaled-up instances ready", lambda: all(
                i["state"] == "ready"
                for i in up.instances("booking").values()), timeout=30)
            peak = count()

            # Slow requests (1 s each, no CPU) keep every booking busy
            # while one leaves: each must still succeed.
            paths = [f"/v1/shows/{s}/seats" for s in (27, 28, 29, 30)]
            for inst in up.instances("booking").values():
                req = urllib.request.Request(
                    f"http://{inst['address']}/internal/v1/faults",
                    data=json.dumps({"status": 0, "delay_ms": 1000}).encode(),
                    method="PUT",
                    headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(req, timeout=5) as resp:
                    self.assertEqual(resp.status, 200)
            slow = [Reader(up.gateway, paths, pause_s=0) for _ in range(4)]
            for r in slow:
                r.start()
            try:
                up.wait("booking scaled down", lambda: count() < peak,
                        timeout=self.WINDOW_MS / 1000 + 30)
                down_at = time.monotonic()
                up.wait("the instance left", lambda: len(
                    up.instances("booking")) == count(), timeout=20)
            finally:
                for r in slow:
                    r.stop()

            # Not before the window since the load stopped (less a second
            # for the last high reading, taken over the previous interval).
            self.assertGreaterEqual(down_at - stopped_at,
                                    self.WINDOW_MS / 1000 - 1.5)
            self.assertEqual(sum(r.failures.__len__() for r in slow), 0,
                             [r.failures[:3] for r in slow])
            self.assertGreater(sum(r.ok for r in slow), 4)
            self.assertIn("instance_drained instance=booking-", up.log_text())
            self.assertNotIn("timed_out=true", up.log_text())

            # No flapping: the count rose, then only fell.
            top = counts.index(max(counts))
            rises_after = [b for a, b in zip(counts[top:], counts[top + 1:])
                           if b > a]
            self.assertEqual(rises_after, [], counts)
            reasons = [d["reason"] for d in up.status()["decisions"]]
            self.assertIn("scale_up", reasons)
            self.assertIn("scale_down", reasons)
            self.assertIn("stabilising", reasons)
            self.assertRegex(up.metrics(),
                             r'marquee_supervisor_scale_decisions_total\{'
                             r'role="booking",reason="scale_down"\} [1-9]')
            self.assertEqual(up.stop(), 0)
            self.assertEqual(up.sanitizer_reports(), [])
        finally:
            up.close()


if __name__ == "__main__":
    unittest.main()
