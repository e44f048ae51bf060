"""Fixtures: the tiny model, and runtimes serving gRPC and the OpenAI API (see harness.py)."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from llm_runtime.models import tiny

from tests.unit.runtime.openai_api import harness


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny.make_tiny_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture
def start(tiny_model: Path) -> harness.Start:
    """`async with start(**settings_overrides) as running:` a runtime serving both protocols."""
    return functools.partial(harness.started, tiny_model)


@pytest.fixture
async def api(start: harness.Start) -> AsyncIterator[harness.Running]:
    async with start() as running:
        yield running
