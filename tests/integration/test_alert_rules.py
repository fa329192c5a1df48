"""The monitoring files of deploy/prometheus/, checked with the real tools.

promtool (package prometheus) checks the Prometheus configuration and the
rules and runs the rules' unit tests; amtool (package
prometheus-alertmanager) checks the Alertmanager configuration and its
routing. The project installs both (scripts/deps.sh), so a missing tool is a
failure, not a skip.

A last check reads the rules and their tests as YAML: every alert has a
severity of page or ticket, a runbook that points at a heading of
docs/operations/alerts.md, and at least one test case where it fires and
one where it does not.

Needs no Marquee binary. Paths are taken from this file's place in the
repository, so it runs from the repository root or from tests/integration.
"""

import os
import re
import shutil
import subprocess
import unittest

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
DEPLOY = os.path.join(ROOT, "deploy", "prometheus")
PROMETHEUS_YML = os.path.join(DEPLOY, "prometheus.yml")
ALERTMANAGER_YML = os.path.join(DEPLOY, "alertmanager.yml")
RULES_YML = os.path.join(DEPLOY, "rules", "marquee.yml")
RULES_TEST_YML = os.path.join(DEPLOY, "tests", "marquee_test.yml")
ALERTS_MD = os.path.join(ROOT, "docs", "operations", "alerts.md")

SEVERITIES = {"page", "ticket"}
ANNOTATIONS = ("summary", "description", "runbook")
RUNBOOK_RE = re.compile(r"^docs/operations/alerts\.md#([a-z0-9_-]+)$")
# The rule tests replay days of samples; they take seconds, not minutes.
TOOL_TIMEOUT_S = 240

PACKAGES = {"promtool": "prometheus", "amtool": "prometheus-alertmanager"}


def tool(test, name):
    """The path of a tool, or a failure of the test that needs it."""
    path = shutil.which(name)
    if path is None:
        test.fail(f"{name} is not installed (Debian package "
                  f"{PACKAGES[name]}; scripts/deps.sh installs it), so "
                  f"{os.path.relpath(DEPLOY, ROOT)} cannot be checked")
    return path


def run(test, argv):
    """Runs a tool from the repository root; returns its merged output.

    Fails the test, with the whole output, unless it exits 0."""
    try:
        proc = subprocess.run(argv, cwd=ROOT, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT,
                              timeout=TOOL_TIMEOUT_S)
    except subprocess.TimeoutExpired as e:
        out = (e.output or b"").decode("utf-8", "replace")
        test.fail(f"{' '.join(argv)} took more than {TOOL_TIMEOUT_S} s:\n"
                  f"{out}")
    out = proc.stdout.decode("utf-8", "replace")
    if proc.returncode != 0:
        print(out)
    test.assertEqual(proc.returncode, 0,
                     f"{' '.join(argv)} exited {proc.returncode}:\n{out}")
    return out


def rel(path):
    return os.path.relpath(path, ROOT)


def load_yaml(path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def heading_anchors(markdown):
    """The anchors that GitHub-style renderers give the headings."""
    anchors = set()
    in_fence = False
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
            continue
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if in_fence or not m:
            continue
        text = re.sub(r"`", "", m.group(1)).strip().lower()
        text = re.sub(r"[^\w\- ]", "", text)
        anchors.add(text.replace(" ", "-"))
    return anchors


class ToolChecksTest(unittest.TestCase):
    """The files as promtool and amtool see them."""

    def test_prometheus_config(self):
        promtool = tool(self, "promtool")
        out = run(self, [promtool, "check", "config", rel(PROMETHEUS_YML)])
        # The rule_files glob must find the rules, not silently nothing.
        self.assertIn("1 rule files found", out)

    def test_alertmanager_config(self):
        amtool = tool(self, "amtool")
        run(self, [amtool, "check-config", rel(ALERTMANAGER_YML)])

    def test_alertmanager_routes_by_severity(self):
        amtool = tool(self, "amtool")
        for labels, receiver in ((["severity=page"], "pager"),
                                 (["severity=ticket"], "tickets"),
                                 (["alertname=Unlabelled"], "tickets")):
            with self.subTest(labels=labels):
                out = run(self, [amtool, "config", "routes", "test",
                                 f"--config.file={rel(ALERTMANAGER_YML)}",
                                 *labels])
                self.assertEqual(out.split()[-1:], [receiver], out)

    def test_rules_check(self):
        promtool = tool(self, "promtool")
        run(self, [promtool, "check", "rules", rel(RULES_YML)])

    def test_rules_unit_tests(self):
        promtool = tool(self, "promtool")
        out = run(self, [promtool, "test", "rules", rel(RULES_TEST_YML)])
        self.assertIn("SUCCESS", out)


class AlertContractTest(unittest.TestCase):
    """Every alert is routable, documented and tested both ways."""

    @classmethod
    def setUpClass(cls):
        cls.rules = load_yaml(RULES_YML)
        cls.tests = load_yaml(RULES_TEST_YML)
        with open(ALERTS_MD, encoding="utf-8") as f:
            cls.anchors = heading_anchors(f.read())
        cls.alerts = [rule for group in cls.rules["groups"]
                      for rule in group["rules"] if "alert" in rule]

    def test_there_are_alerts(self):
        self.assertGreater(len(self.alerts), 0, rel(RULES_YML))

    def test_every_alert_has_a_known_severity(self):
        for rule in self.alerts:
            with self.subTest(alert=rule["alert"]):
                severity = rule.get("labels", {}).get("severity")
                self.assertIn(severity, SEVERITIES)

    def test_every_alert_has_its_annotations(self):
        for rule in self.alerts:
            with self.subTest(alert=rule["alert"]):
                annotations = rule.get("annotations", {})
                for key in ANNOTATIONS:
                    self.assertTrue(str(annotations.get(key, "")).strip(),
                                    f"annotation {key} missing or empty")

    def test_every_runbook_is_a_heading_of_alerts_md(self):
        for rule in self.alerts:
            name = rule["alert"]
            with self.subTest(alert=name):
                runbook = rule.get("annotations", {}).get("runbook", "")
                m = RUNBOOK_RE.match(runbook)
                self.assertIsNotNone(
                    m, f"runbook {runbook!r} is not "
                    f"docs/operations/alerts.md#<anchor>")
                self.assertEqual(m.group(1), name.lower(),
                                 "the anchor is the alert name in lower case")
                self.assertIn(m.group(1), self.anchors,
                              f"no heading {name} in {rel(ALERTS_MD)}")

    def cases(self):
        """(alertname, fired severities, had a non-firing case) per alert."""
        fired, quiet = {}, set()
        for group in self.tests["tests"]:
            for case in group.get("alert_rule_test") or []:
                name = case["alertname"]
                expected = case.get("exp_alerts") or []
                if not expected:
                    quiet.add(name)
                for alert in expected:
                    severity = (alert.get("exp_labels") or {}).get("severity")
                    fired.setdefault(name, set()).add(severity)
        return fired, quiet

    def test_every_alert_fires_in_a_test(self):
        fired, _ = self.cases()
        for rule in self.alerts:
            name, severity = rule["alert"], rule["labels"]["severity"]
            with self.subTest(alert=name, severity=severity):
                self.assertIn(severity, fired.get(name, set()),
                              f"no case in {rel(RULES_TEST_YML)} where "
                              f"{name} fires with severity {severity}")

    def test_every_alert_stays_quiet_in_a_test(self):
        _, quiet = self.cases()
        for name in sorted({rule["alert"] for rule in self.alerts}):
            with self.subTest(alert=name):
                self.assertIn(name, quiet,
                              f"no case in {rel(RULES_TEST_YML)} with "
                              f"exp_alerts: [] for {name}")

    def test_tests_name_only_existing_alerts(self):
        fired, quiet = self.cases()
        known = {rule["alert"] for rule in self.alerts}
        unknown = (set(fired) | quiet) - known
        self.assertEqual(sorted(unknown), [],
                         "the tests name alerts that the rules do not have")


if __name__ == "__main__":
    unittest.main()
