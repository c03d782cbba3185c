"""Fixtures for the unit tests: a fresh stage with both teams for every test."""

from __future__ import annotations

import pytest
from tests.unit.stage import Stage, build_stage, seed_team


@pytest.fixture
async def stage() -> Stage:
    built = build_stage()
    await seed_team(built)
    return built
