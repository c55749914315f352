"""Fixtures shared by the reporting tests."""

from __future__ import annotations

from typing import List

import pytest

from opentracing_sls.reporting import Reporter


@pytest.fixture
def reporters():
    """Reporters built by a test; closed afterwards so no worker thread outlives it."""
    made: List[Reporter] = []
    yield made
    for reporter in made:
        reporter.close(1)
