"""Shared fixtures: hypothesis profiles, the cached model zoo, the bundled example."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("nightly", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
settings.load_profile(PROFILE)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "digits_mlp"


@pytest.fixture(scope="session")
def zoo_dir(request: pytest.FixtureRequest) -> Path:
    """Where zoo models are built; persists across runs (keyed by the zoo's source hash)."""
    return Path(request.config.cache.mkdir("modelzoo"))


@pytest.fixture(scope="session")
def example_dir() -> Path:
    return EXAMPLE


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``nightly`` run only with ``HYPOTHESIS_PROFILE=nightly`` (the one switch for the long tier)."""
    if PROFILE == "nightly":
        return
    skip = pytest.mark.skip(reason="nightly tier: run with HYPOTHESIS_PROFILE=nightly")
    for item in items:
        if "nightly" in item.keywords:
            item.add_marker(skip)
