#!/usr/bin/python3
"""The one entry point of Marquee's tests.

Runs, in order:
  unit         every unit test binary of build/asan/tests/, then the same
               binaries of build/release/tests/
  integration  every tests/integration/test_*.py (unittest modules), each in
               its own process, with MARQUEE_BIN set to build/asan/marquee
  lint         every API description, docs/api/*.yaml, through redocly (one
               test per file)

Usage:
  tests/run.py                       everything
  tests/run.py unit                  one suite (several may be named)
  tests/run.py unit test_config      only the binaries whose name contains it
  tests/run.py integration test_catalog
  tests/run.py integration test_catalog.CatalogTest.test_get_show
  tests/run.py test_config           unit and integration, filtered (no lint)

Every sub-run's output is streamed as it comes.  The last line is
"N passed, N failed" (", N skipped" is added when tests were skipped); the
exit code is 1 when anything failed or nothing ran.

Environment:
  MARQUEE_TEST_TIMEOUT  seconds one sub-run may take (default 300)
  MARQUEE_TEST_BUDGET   seconds the whole run may take (default 780)
  MARQUEE_BIN           the binary the integration suites start
                        (default build/asan/marquee)
Sub-runs get ASAN_OPTIONS and UBSAN_OPTIONS that stop at the first report,
and LSAN_OPTIONS with the suppressions of tests/lsan.supp.
"""

import importlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INTEGRATION_DIR = os.path.join(ROOT, "tests", "integration")
UNIT_SRC_DIR = os.path.join(ROOT, "tests", "unit")
BUILDS = ("asan", "release")
SUITES = ("unit", "integration", "lint")

REDOCLY = os.path.join(ROOT, "build", "node", "node_modules", ".bin",
                       "redocly")
REDOCLY_CONFIG = os.path.join("tests", "tools", "redocly.yaml")
API_DIR = os.path.join("docs", "api")

SUBRUN_TIMEOUT_S = float(os.environ.get("MARQUEE_TEST_TIMEOUT", "300"))
BUDGET_S = float(os.environ.get("MARQUEE_TEST_BUDGET", "780"))
# After a kill, how long to wait for the output pipe to close.
DRAIN_TIMEOUT_S = 5.0

LSAN_SUPPRESSIONS = os.path.join(ROOT, "tests", "lsan.supp")
SANITIZER_ENV = {
    "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=1",
    "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
}
# Known leaks of libraries, each explained in the file itself.
if os.path.isfile(LSAN_SUPPRESSIONS):
    SANITIZER_ENV["LSAN_OPTIONS"] = (f"suppressions={LSAN_SUPPRESSIONS}"
                                     ":print_suppressions=0")
# Words that only a sanitizer prints: a report means a failure even when the
# process somehow exited 0.
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                   "runtime error:")
SUMMARY_RE = re.compile(r"^(\d+) passed, (\d+) failed\s*$")


class Tally:
    """Counts of the whole run, and the names of the sub-runs that failed."""

    def __init__(self):
        self.passed = 0
        self.failed = 0
        self.skipped = 0
        self.failures = []
        self.deadline = time.monotonic() + BUDGET_S

    def add(self, name, passed, failed, skipped=0, reason=None):
        self.passed += passed
        self.failed += failed
        self.skipped += skipped
        if failed:
            self.failures.append(f"{name}: {reason or f'{failed} failed'}")

    def timeout(self):
        """Seconds the next sub-run may take; 0 once the budget is spent."""
        return max(0.0, min(SUBRUN_TIMEOUT_S,
                            self.deadline - time.monotonic()))

    def final_line(self):
        line = f"{self.passed} passed, {self.failed} failed"
        if self.skipped:
            line += f", {self.skipped} skipped"
        return line


def header(text):
    print(f"\n==== {text} ====", flush=True)


def footer(text):
    print(f"---- {text}", flush=True)


def rel(path):
    return os.path.relpath(path, ROOT)


def stream(argv, env, timeout_s, cwd=ROOT):
    """Runs argv, echoing its stdout and stderr (merged) line by line.

    Returns (exit code or None on timeout, the output's text).  On timeout the
    whole process group is killed, so that servers started by a test go too.
    """
    lines = []
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)

    def pump():
        for raw in proc.stdout:
            text = raw.decode("utf-8", "replace")
            lines.append(text)
            sys.stdout.write(text)
            sys.stdout.flush()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    code = None
    try:
        code = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        code = None
    finally:
        # Children a test left behind (or all of a hung run) would hold the
        # pipe open and outlive the run.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if code is None:
            proc.wait()
    reader.join(DRAIN_TIMEOUT_S)
    return code, "".join(lines)


def describe_exit(code):
    if code is None:
        return "timed out"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def sanitizer_report(output):
    return any(mark in output for mark in SANITIZER_MARKS)


def matches(name, filters):
    return not filters or any(f in name for f in filters)


# ---------------------------------------------------------------- unit

def unit_names(filters):
    """Names of the unit tests: from the sources, and from every build."""
    names = set()
    if os.path.isdir(UNIT_SRC_DIR):
        for entry in os.listdir(UNIT_SRC_DIR):
            if entry.startswith("test_") and entry.endswith(".c"):
                names.add(entry[:-2])
    for build in BUILDS:
        bin_dir = os.path.join(ROOT, "build", build, "tests")
        if os.path.isdir(bin_dir):
            for entry in os.listdir(bin_dir):
                path = os.path.join(bin_dir, entry)
                if (entry.startswith("test_") and os.path.isfile(path)
                        and os.access(path, os.X_OK)):
                    names.add(entry)
    return sorted(n for n in names if matches(n, filters))


def run_unit_binary(tally, build, name):
    label = f"unit [{build}] {name}"
    path = os.path.join(ROOT, "build", build, "tests", name)
    header(label)
    if not os.access(path, os.X_OK):
        footer(f"{label}: FAILED, {rel(path)} is not built")
        tally.add(label, 0, 1, reason="not built")
        return
    timeout_s = tally.timeout()
    if timeout_s <= 0:
        footer(f"{label}: FAILED, not run: the time budget is used up")
        tally.add(label, 0, 1, reason="not run, time budget used up")
        return

    env = dict(os.environ, **SANITIZER_ENV)
    started = time.monotonic()
    code, output = stream([path], env, timeout_s)
    took = time.monotonic() - started

    summary = None
    for line in output.splitlines():
        m = SUMMARY_RE.match(line)
        if m:
            summary = (int(m.group(1)), int(m.group(2)))
    if summary:
        passed, failed = summary
    else:
        # Killed before its summary (a sanitizer aborts at exit, before
        # stdout is flushed): count the tests that did report.
        passed = sum(1 for line in output.splitlines()
                     if line.startswith("ok "))
        failed = sum(1 for line in output.splitlines()
                     if line.startswith("FAIL "))
    problem = None
    if code is None:
        problem = f"timed out after {timeout_s:.0f} s"
    elif sanitizer_report(output):
        problem = f"sanitizer report ({describe_exit(code)})"
    elif summary is None:
        problem = f"no 'N passed, N failed' line ({describe_exit(code)})"
    elif code != 0 and failed == 0:
        problem = f"{describe_exit(code)} after its summary"
    elif code == 0 and failed > 0:
        problem = f"{failed} failed but exit code 0"
    if problem and (failed == 0 or summary is None):
        # The run itself went wrong, beyond any test the binary reported.
        failed += 1

    verdict = "ok" if failed == 0 else "FAILED"
    detail = f", {problem}" if problem else ""
    footer(f"{label}: {verdict}, {passed} passed, {failed} failed{detail} "
           f"({took:.1f} s)")
    tally.add(label, passed, failed, reason=problem)


def run_unit(tally, filters):
    names = unit_names(filters)
    if not names:
        header("unit")
        footer("unit: no unit tests found" +
               (" matching the filter" if filters else ""))
        return
    for build in BUILDS:
        for name in names:
            run_unit_binary(tally, build, name)


# ---------------------------------------------------------------- integration

def integration_selection(filters):
    """(module, test names or None for all) pairs that the filters select."""
    if not os.path.isdir(INTEGRATION_DIR):
        return []
    modules = sorted(e[:-3] for e in os.listdir(INTEGRATION_DIR)
                     if e.startswith("test_") and e.endswith(".py"))
    if not filters:
        return [(m, None) for m in modules]
    picked = []
    for module in modules:
        # A dotted filter names tests inside one module; a plain one is a
        # part of module names.
        dotted = [f for f in filters if "." in f
                  and f.split(".", 1)[0] == module]
        if dotted:
            picked.append((module, dotted))
        elif any("." not in f and f in module for f in filters):
            picked.append((module, None))
    return picked


def marquee_bin():
    return os.environ.get("MARQUEE_BIN") or os.path.join(
        ROOT, "build", "asan", "marquee")


def run_integration_module(tally, module, names):
    label = f"integration {module}"
    header(label + (f" ({', '.join(names)})" if names else ""))
    timeout_s = tally.timeout()
    if timeout_s <= 0:
        footer(f"{label}: FAILED, not run: the time budget is used up")
        tally.add(label, 0, 1, reason="not run, time budget used up")
        return

    with tempfile.TemporaryDirectory(prefix="marquee-run-") as tmp:
        result_path = os.path.join(tmp, "result.json")
        env = dict(os.environ, **SANITIZER_ENV)
        env["MARQUEE_BIN"] = os.path.abspath(marquee_bin())
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (INTEGRATION_DIR, env.get("PYTHONPATH")) if p)
        env["PYTHONUNBUFFERED"] = "1"
        # No __pycache__ folders in the source tree.
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        argv = [sys.executable, os.path.abspath(__file__), "--run-module",
                module, result_path] + (names or [])
        started = time.monotonic()
        code, _ = stream(argv, env, timeout_s)
        took = time.monotonic() - started
        try:
            with open(result_path, encoding="utf-8") as f:
                result = json.load(f)
        except (OSError, ValueError):
            result = None

    if result is None:
        problem = (f"timed out after {timeout_s:.0f} s" if code is None
                   else f"no result ({describe_exit(code)})")
        footer(f"{label}: FAILED, {problem} ({took:.1f} s)")
        tally.add(label, 0, 1, reason=problem)
        return

    passed, failed = result["passed"], result["failed"] + result["errors"]
    problem = None
    if code is None:
        problem = f"timed out after {timeout_s:.0f} s"
    elif code != 0 and failed == 0:
        problem = describe_exit(code)
    elif result.get("load_error"):
        problem = "could not load its tests"
    elif result["run"] == 0:
        problem = "no test ran"
    if problem and failed == 0:
        failed = 1
    verdict = "ok" if failed == 0 else "FAILED"
    detail = f", {problem}" if problem else ""
    footer(f"{label}: {verdict}, {passed} passed, {result['failed']} failed, "
           f"{result['errors']} errors, {result['skipped']} skipped{detail} "
           f"({took:.1f} s)")
    tally.add(label, passed, failed, result["skipped"], reason=problem)


def run_integration(tally, filters):
    selection = integration_selection(filters)
    if not selection:
        header("integration")
        footer("integration: no integration suites found" +
               (" matching the filter" if filters else ""))
        return
    binary = marquee_bin()
    if not os.access(binary, os.X_OK):
        header("integration")
        footer(f"integration: FAILED, {binary} is not built")
        tally.add("integration", 0, 1, reason=f"{binary} is not built")
        return
    for module, names in selection:
        run_integration_module(tally, module, names)


class _CountingResult(unittest.TextTestResult):
    """Counts passes too; unittest only keeps the other outcomes."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.passes = 0

    def addSuccess(self, test):
        super().addSuccess(test)
        self.passes += 1


def run_module_in_child(module, result_path, names):
    """The child side of run_integration_module: runs one module's tests."""
    sys.path.insert(0, INTEGRATION_DIR)
    loader = unittest.defaultTestLoader
    try:
        if names:
            suite = loader.loadTestsFromNames(names)
        else:
            suite = loader.loadTestsFromModule(
                importlib.import_module(module))
    except Exception:  # noqa: BLE001 - an import error is a test error
        import traceback
        traceback.print_exc()
        counts = {"run": 0, "passed": 0, "failed": 0, "errors": 1,
                  "skipped": 0, "load_error": True}
    else:
        runner = unittest.TextTestRunner(stream=sys.stdout, verbosity=2,
                                         resultclass=_CountingResult)
        result = runner.run(suite)
        counts = {
            "run": result.testsRun,
            "passed": result.passes,
            "failed": len(result.failures) +
            len(result.unexpectedSuccesses),
            "errors": len(result.errors),
            "skipped": len(result.skipped),
        }
    with open(result_path, "w", encoding="utf-8") as f:
        json.dump(counts, f)
    return 0 if counts["failed"] + counts["errors"] == 0 else 1


# ---------------------------------------------------------------- lint

def api_specs():
    """The API descriptions to lint: docs/api/*.yaml, relative to ROOT."""
    folder = os.path.join(ROOT, API_DIR)
    if not os.path.isdir(folder):
        return []
    return [os.path.join(API_DIR, entry)
            for entry in sorted(os.listdir(folder))
            if entry.endswith(".yaml")
            and os.path.isfile(os.path.join(folder, entry))]


def run_lint(tally):
    specs = api_specs()
    if not specs:
        label = f"lint {API_DIR}/*.yaml"
        header(label)
        footer(f"{label}: FAILED, no API description found")
        tally.add(label, 0, 1, reason="no API description found")
        return
    for spec in specs:
        run_lint_spec(tally, spec)


def run_lint_spec(tally, spec):
    label = f"lint {spec}"
    header(label)
    problem = None
    if not os.access(REDOCLY, os.X_OK):
        problem = f"{rel(REDOCLY)} is missing; run scripts/deps.sh"
    elif tally.timeout() <= 0:
        problem = "not run: the time budget is used up"
    if problem:
        footer(f"{label}: FAILED, {problem}")
        tally.add(label, 0, 1, reason=problem)
        return

    env = dict(os.environ, REDOCLY_TELEMETRY="off",
               REDOCLY_SUPPRESS_UPDATE_NOTICE="true", NO_COLOR="1")
    argv = [REDOCLY, "lint", "--config", REDOCLY_CONFIG, spec]
    started = time.monotonic()
    code, _ = stream(argv, env, tally.timeout())
    took = time.monotonic() - started
    if code == 0:
        footer(f"{label}: ok ({took:.1f} s)")
        tally.add(label, 1, 0)
    else:
        footer(f"{label}: FAILED, {describe_exit(code)} ({took:.1f} s)")
        tally.add(label, 0, 1, reason=describe_exit(code))


# ---------------------------------------------------------------- main

def parse_args(argv):
    suites, filters = [], []
    for arg in argv:
        if arg in ("-h", "--help"):
            print(__doc__.strip())
            sys.exit(0)
        if arg in SUITES:
            suites.append(arg)
        elif arg.startswith("-"):
            sys.exit(f"run.py: unknown option {arg} (see --help)")
        else:
            filters.append(arg)
    if not suites:
        # Filters name unit binaries and integration modules; the lint has
        # nothing to filter, so a filtered run leaves it out unless named.
        suites = ["unit", "integration"] if filters else list(SUITES)
    return [s for s in SUITES if s in suites], filters


def main(argv):
    if argv[:1] == ["--run-module"]:
        return run_module_in_child(argv[1], argv[2], argv[3:])

    suites, filters = parse_args(argv)
    tally = Tally()
    started = time.monotonic()
    if "unit" in suites:
        run_unit(tally, filters)
    if "integration" in suites:
        run_integration(tally, filters)
    if "lint" in suites:
        run_lint(tally)

    print(f"\n==== summary ({time.monotonic() - started:.0f} s) ====")
    for failure in tally.failures:
        print(f"FAILED {failure}")
    if tally.passed + tally.failed == 0:
        print("nothing ran")
    print(tally.final_line(), flush=True)
    return 0 if tally.failed == 0 and tally.passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
