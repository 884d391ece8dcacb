"""Command-line tools the tests drive: found, or the test fails in CI and skips elsewhere."""

import os
import shutil

import pytest


def swaks() -> str:
    """The path of swaks. CI (`POSTLINE_TEST_REQUIRE_TOOLS`) installs it, so missing fails there."""
    found = shutil.which("swaks")
    if found is None:
        if os.environ.get("POSTLINE_TEST_REQUIRE_TOOLS"):
            pytest.fail("swaks is not installed (apt-get install swaks)")
        pytest.skip("swaks is not installed (apt-get install swaks); CI installs it")
    return found
