"""The guard of tests/conftest.py: a test not marked ``slow`` that starts a process fails, naming it;
the same test marked ``slow`` passes. (Marked slow itself: the inner session's process is seen by
this session's hook too.)"""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

CONFTEST = (Path(__file__).parent / "conftest.py").read_text()


def test_a_fast_test_that_starts_a_process_fails_and_a_slow_one_passes(pytester):
    pytester.makeconftest(CONFTEST)
    pytester.makeini("[pytest]\nmarkers =\n    slow: starts processes\n")
    pytester.makepyfile(test_inner='''
import subprocess, pytest

def test_fast_but_spawns():
    subprocess.run(["true"], check=True)

@pytest.mark.slow
def test_slow_and_spawns():
    subprocess.run(["true"], check=True)

def test_fast_and_pure():
    assert sum([1, 2]) == 3
''')
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*test_fast_but_spawns is not marked slow but started 1 process(es): subprocess.Popen*"])
