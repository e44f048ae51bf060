"""Settings load once from LLM_OPERATOR_* and fail fast naming the variable."""

from __future__ import annotations

from pathlib import Path

import gen_docs
import pytest
from llm_operator import settings
from llm_runtime.api import contract

pytestmark = pytest.mark.unit


def test_defaults_are_cluster_wide_with_peering_and_a_random_priority() -> None:
    a, b = settings.from_env({}), settings.from_env({})
    assert a.namespaces == ()
    assert a.peering_name == "llm-operator"
    assert not a.standalone
    assert a.runtime_image.startswith("llm-operator/runtime:")
    assert a.priority != b.priority  # two replicas never tie (kopf freezes on a tie)


def test_ports_default_to_the_contracts() -> None:
    s = settings.from_env({})
    assert s.health_port == contract.OPERATOR_HEALTH_PORT
    assert s.metrics_port == contract.OPERATOR_METRICS_PORT


def test_values_are_parsed_and_typed() -> None:
    s = settings.from_env(
        {
            "LLM_OPERATOR_NAMESPACES": "a, b",
            "LLM_OPERATOR_PRIORITY": "5",
            "LLM_OPERATOR_STANDALONE": "true",
            "LLM_OPERATOR_STATUS_INTERVAL_SECONDS": "2.5",
            "LLM_OPERATOR_LOG_FORMAT": "Text",
            "LLM_OPERATOR_LOG_LEVEL": "DEBUG",
            "UNRELATED": "x",
        }
    )
    assert s.namespaces == ("a", "b")
    assert s.priority == 5
    assert s.standalone is True
    assert s.status_interval_seconds == 2.5
    assert s.log_format == "text"
    assert s.log_level == "debug"
    assert not s.peering


def test_an_empty_peering_name_means_standalone() -> None:
    assert settings.from_env({}).peering
    assert not settings.from_env({"LLM_OPERATOR_PEERING_NAME": ""}).peering


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LLM_OPERATOR_METRICS_PORT", "70000"),
        ("LLM_OPERATOR_LOG_FORMAT", "xml"),
        ("LLM_OPERATOR_STATUS_INTERVAL_SECONDS", "0"),
        ("LLM_OPERATOR_PRIORITY", "high"),
    ],
)
def test_a_bad_value_fails_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(settings.SettingsError, match=name):
        settings.from_env({name: value})


def test_wake_handler_success_lines_are_dropped_but_failures_kept() -> None:
    import logging

    from llm_operator import main

    def record(message: str, level: int) -> logging.LogRecord:
        return logging.LogRecord("kopf.objects", level, __file__, 1, message, (), None)

    quiet = main.QuietHandlers()
    assert not quiet.filter(record("Handler 'wake-pod' succeeded.", logging.INFO))
    assert not quiet.filter(record("Handler 'wake' succeeded.", logging.INFO))
    assert quiet.filter(
        record("Handler 'wake-pod' failed with an exception. Will retry.", logging.ERROR)
    )
    assert quiet.filter(record("Daemon 'rollout' succeeded.", logging.INFO))


def test_every_setting_is_described_and_the_docs_table_is_current() -> None:
    for name, info in settings.Settings.model_fields.items():
        assert info.description, f"{name} has no description (docs/operator-settings.md needs it)"
    doc = Path(__file__).resolve().parents[3] / "docs" / "operator-settings.md"
    current = doc.read_text()
    assert gen_docs.render_settings(current) == current, (
        "docs/operator-settings.md's settings table is stale: run `make docs`"
    )
