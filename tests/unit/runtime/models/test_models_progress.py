"""The one progress switch: explicit choices win, and library bars are restored afterwards."""

from __future__ import annotations

import importlib

import pytest
from llm_runtime.models import progress
from transformers.utils import logging as hf_logging

pytestmark = pytest.mark.unit


def test_explicit_choice_wins_and_auto_follows_the_terminal() -> None:
    import sys

    assert progress.resolve(True) is True
    assert progress.resolve(False) is False
    assert progress.resolve(None) is sys.stderr.isatty()


@pytest.mark.parametrize("show", [True, False])
def test_transformers_bars_follow_the_switch_and_are_restored(show: bool) -> None:
    before = hf_logging.is_progress_bar_enabled()
    with progress.transformers_bars(show):
        assert hf_logging.is_progress_bar_enabled() is show
    assert hf_logging.is_progress_bar_enabled() is before


@pytest.mark.parametrize("show", [True, False])
def test_hub_bars_follow_the_switch_and_are_restored(show: bool) -> None:
    hub = importlib.import_module("huggingface_hub.utils.tqdm")
    before = hub.are_progress_bars_disabled()
    with progress.hub_bars(show):
        assert hub.are_progress_bars_disabled() is (not show)
    assert hub.are_progress_bars_disabled() is before
