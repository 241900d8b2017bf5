"""Tests that need a system tool (mono, chromium, haproxy) skip where it is missing, except in CI (CI=true, set by
.ci/run), where `scripts/test.sh` installs them and a skip would hide a broken setup."""

from __future__ import annotations

import os
import shutil

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def skip_or_fail(reason: str) -> None:
    """Skip the calling test with ``reason``; under CI, fail with it instead."""
    if in_ci():
        pytest.fail(f"{reason} (CI is set, so this test may not skip)")
    pytest.skip(reason)


def require_mono() -> None:
    if not (shutil.which("mcs") and shutil.which("mono")):
        skip_or_fail("mcs/mono not installed (apt-get install -y --no-install-recommends mono-mcs)")
