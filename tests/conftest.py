"""Fixtures shared by the test modules that run whole working directories."""

from __future__ import annotations

import pytest

from tests.frameworks import require


@pytest.fixture(scope="module", params=["pytorch", "tensorflow"])
def framework(request):
    """Each framework in turn, for tests that run a whole working directory in both."""
    require("torch" if request.param == "pytorch" else "tensorflow")
    return request.param
