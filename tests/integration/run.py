#!/usr/bin/env python3
"""Runs the socketnautd integration tests: every test_*.py beside this file.

usage: run.py [FILTER ...]   (a test runs if its id, e.g. test_burst.BurstTest.test_x,
                              contains one of the FILTERs; no FILTER runs them all)

Environment: SOCKETNAUTD (daemon binary, default build/socketnautd), SN_BUILD (directory
holding socketnaut-hello, default build), SN_DEBUG=0 (daemon without -d), SN_KEEP=1 (keep
temp directories).  Prints one line per test and ends with `N passed, N failed[, N skipped]`.
"""

import os
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True


def flatten(suite):
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            yield from flatten(item)
        else:
            yield item


class LineResult(unittest.TestResult):
    """Prints `name ... ok|FAIL|skipped (reason)` with the time each test took."""

    def __init__(self):
        super().__init__()
        self.passed = 0
        self.failed = 0
        self.skip_count = 0
        self._start = 0.0
        self._state = "ok"

    def startTest(self, test):
        super().startTest(test)
        self._start = time.monotonic()
        self._state = "ok"
        sys.stdout.write("%s ... " % test.id())
        sys.stdout.flush()

    def _report_failure(self, test, err, label):
        self._state = "bad"
        sys.stdout.write("%s\n" % label)
        sys.stdout.write(self._exc_info_to_string(err, test))
        sys.stdout.flush()

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._report_failure(test, err, "FAIL")

    def addError(self, test, err):
        super().addError(test, err)
        self._report_failure(test, err, "FAIL (error)")

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is not None:
            label = "FAIL" if issubclass(err[0], test.failureException) else "FAIL (error)"
            self._report_failure(subtest, err, "%s in %s" % (label, subtest.id()))

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self._state = "skip"
        sys.stdout.write("skipped (%s)\n" % reason)

    def addSuccess(self, test):
        super().addSuccess(test)
        sys.stdout.write("ok (%.1f s)\n" % (time.monotonic() - self._start))

    def stopTest(self, test):
        super().stopTest(test)
        if self._state == "bad":
            self.failed += 1
        elif self._state == "skip":
            self.skip_count += 1
        else:
            self.passed += 1
        sys.stdout.flush()


def main(argv):
    filters = argv[1:]
    loader = unittest.TestLoader()
    suite = loader.discover(HERE, pattern="test_*.py", top_level_dir=HERE)
    tests = list(flatten(suite))
    broken = [t for t in tests if type(t).__name__ == "_FailedTest"]
    if filters:
        tests = [t for t in tests if t in broken or any(f in t.id() for f in filters)]
    result = LineResult()
    started = time.monotonic()
    for test in tests:
        test(result)
    if not tests:
        sys.stdout.write("no test matches %s\n" % " ".join(filters))
    line = "%d passed, %d failed" % (result.passed, result.failed)
    if result.skip_count:
        line += ", %d skipped" % result.skip_count
    sys.stdout.write("(%.1f s)\n%s\n" % (time.monotonic() - started, line))
    return 1 if result.failed or not tests else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
