"""Run tornado's own test suite (tornado.test.runtests, its test list, warning and
logging policy unchanged) and also write one line per test to the file named by
argv[1]: "<test id>TAB<pass|fail|error|skip|xfail|xpass>"."""

import sys
import unittest

import tornado.test.runtests as runtests

out = open(sys.argv[1], "w", buffering=1)
del sys.argv[1]
factory = runtests.test_runner_factory


def recording_factory(stderr):
    runner = factory(stderr)

    class Recording(runner):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            parent = self.resultclass

            class Result(parent):
                def _rec(self, test, what):
                    out.write(f"{test.id()}\t{what}\n")

                def addSuccess(self, test):
                    super().addSuccess(test)
                    self._rec(test, "pass")

                def addFailure(self, test, err):
                    super().addFailure(test, err)
                    self._rec(test, "fail")

                def addError(self, test, err):
                    super().addError(test, err)
                    self._rec(test, "error")

                def addSkip(self, test, reason):
                    super().addSkip(test, reason)
                    self._rec(test, "skip")

                def addExpectedFailure(self, test, err):
                    super().addExpectedFailure(test, err)
                    self._rec(test, "xfail")

                def addUnexpectedSuccess(self, test):
                    super().addUnexpectedSuccess(test)
                    self._rec(test, "xpass")

            self.resultclass = Result

    return Recording


# tornado.testing.main loads the test named "all" from __main__, as runtests defines it.
all = runtests.all  # noqa: A001
runtests.test_runner_factory = recording_factory
runtests.main()
