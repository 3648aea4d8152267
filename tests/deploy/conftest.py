"""Registers the ``deploy`` marker: tests of the Dockerfile, compose file and Prometheus."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    """Declare the marker (the suite runs with ``--strict-markers``)."""
    config.addinivalue_line(
        "markers",
        "deploy: deployment tests (Dockerfile replay, compose, real Prometheus); "
        "they skip when a tool from scripts/ci-apt.sh is missing",
    )
