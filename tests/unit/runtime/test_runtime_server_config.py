"""Settings: flag > LLM_RUNTIME_* variable > default, validated before anything starts."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest
from llm_runtime import cli, config
from llm_runtime.api import contract

pytestmark = pytest.mark.unit


def _parse(argv: list[str], env: dict[str, str]) -> config.Settings:
    parser = argparse.ArgumentParser()
    config.add_arguments(parser, env=env)
    return config.from_namespace(parser.parse_args(argv))


def test_defaults_without_flags_or_environment() -> None:
    assert _parse([], {}) == config.Settings()


def test_the_ports_default_to_the_contracts() -> None:
    defaults = config.Settings()
    assert defaults.grpc_port == contract.RUNTIME_GRPC_PORT
    assert defaults.metrics_port == contract.RUNTIME_METRICS_PORT
    assert defaults.http_port == contract.RUNTIME_HTTP_PORT


def test_the_http_port_comes_from_its_flag_or_variable_and_zero_turns_it_off() -> None:
    assert contract.env("http_port") == "LLM_RUNTIME_HTTP_PORT"
    assert _parse([], {"LLM_RUNTIME_HTTP_PORT": "0"}).http_port == 0
    assert _parse(["--http-port", "8443"], {"LLM_RUNTIME_HTTP_PORT": "0"}).http_port == 8443


def test_two_servers_on_one_port_are_refused_naming_the_later_setting() -> None:
    clash = config.Settings(http_port=contract.RUNTIME_GRPC_PORT)
    assert config.validate(clash) == [
        "http_port must differ from grpc_port (or be 0) (--http-port, LLM_RUNTIME_HTTP_PORT)"
    ]
    health = config.Settings(health_port=contract.RUNTIME_GRPC_PORT)
    assert [p.split(" (--")[0] for p in config.validate(health)] == [
        "health_port must differ from grpc_port (or be 0)"
    ]
    off = config.Settings(grpc_port=0, metrics_port=0, health_port=0, http_port=0)
    assert config.validate(off) == []  # 0 picks a free port or turns a server off: no clash


def test_every_setting_has_an_option_and_every_option_a_setting() -> None:
    fields = [f.name for f in dataclasses.fields(config.Settings)]
    assert [opt.field for opt in config.OPTIONS] == fields


def test_environment_sets_a_value_and_a_flag_overrides_it() -> None:
    env = {contract.env("max_batch_size"): "8", contract.env("grace_seconds"): "2.5"}
    assert _parse([], env).max_batch_size == 8
    assert _parse([], env).grace_seconds == 2.5
    assert _parse(["--max-batch-size", "4"], env).max_batch_size == 4


def test_the_operator_variables_name_the_model_for_metrics() -> None:
    env = {contract.env("model_name"): "chat", contract.env("model_revision"): "r7"}
    settings = _parse([], env)
    assert (settings.model_name, settings.model_revision) == ("chat", "r7")


@pytest.mark.parametrize(("raw", "expected"), [("1", True), ("TRUE", True), ("off", False)])
def test_boolean_variables_and_flags(raw: str, expected: bool) -> None:
    env = {contract.env("log_payloads"): raw}
    assert _parse([], env).log_payloads is expected
    assert _parse(["--no-log-payloads"], env).log_payloads is False


def test_a_malformed_variable_names_itself() -> None:
    name = contract.env("grpc_port")
    with pytest.raises(ValueError, match=f"{name}='http'"):
        _parse([], {name: "http"})


def test_validation_lists_every_problem(tmp_path: Path) -> None:
    settings = config.Settings(
        max_batch_size=0, grpc_port=70000, tls_cert=tmp_path / "missing.pem", log_level="LOUD"
    )
    problems = config.validate(settings)
    assert "max_batch_size must be >= 1 (--max-batch-size, LLM_RUNTIME_MAX_BATCH_SIZE)" in problems
    assert "grpc_port must be in 0..65535 (--grpc-port, LLM_RUNTIME_GRPC_PORT)" in problems
    assert "tls_cert and tls_key go together: give both or neither" in problems
    assert f"{tmp_path / 'missing.pem'} does not exist" in problems
    assert any("log_level" in p for p in problems)
    assert config.validate(config.Settings()) == []


def test_the_connection_age_and_its_grace_come_from_the_environment_or_flags() -> None:
    defaults = config.Settings()
    assert (defaults.max_connection_age_seconds, defaults.max_connection_age_grace_seconds) == (
        30.0,
        300.0,
    )
    age, grace = (
        contract.env("max_connection_age_seconds"),
        "LLM_RUNTIME_MAX_CONNECTION_AGE_GRACE_SECONDS",
    )
    assert age == "LLM_RUNTIME_MAX_CONNECTION_AGE_SECONDS"
    assert contract.env("max_connection_age_grace_seconds") == grace
    settings = _parse([], {age: "1.5", grace: "0"})
    assert (settings.max_connection_age_seconds, settings.max_connection_age_grace_seconds) == (
        1.5,
        0.0,
    )
    flags = ["--max-connection-age-seconds", "0", "--max-connection-age-grace-seconds", "600"]
    settings = _parse(flags, {age: "1.5"})
    assert (settings.max_connection_age_seconds, settings.max_connection_age_grace_seconds) == (
        0.0,
        600.0,
    )
    assert config.validate(settings) == []  # 0 turns the age off


@pytest.mark.parametrize(
    "field", ["max_connection_age_seconds", "max_connection_age_grace_seconds"]
)
@pytest.mark.parametrize("value", [-1.0, float("nan")])
def test_a_negative_connection_age_is_refused_naming_its_variable(field: str, value: float) -> None:
    settings = dataclasses.replace(config.Settings(), **{field: value})  # type: ignore[arg-type]
    problems = config.validate(settings)
    flag = "--" + field.replace("_", "-")
    assert problems == [f"{field} must be >= 0 ({flag}, {contract.env(field)})"]


def test_serve_refuses_a_negative_age_from_the_environment_before_starting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    name = contract.env("max_connection_age_seconds")
    monkeypatch.setenv(name, "-5")
    assert cli.main(["serve"]) == 2
    err = capsys.readouterr().err
    assert "max_connection_age_seconds must be >= 0" in err and name in err


def test_the_token_file_is_read_without_its_trailing_newline(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("s3cret\n")
    assert config.read_token(path) == b"s3cret"
    path.write_text("\n")
    with pytest.raises(ValueError, match="empty"):
        config.read_token(path)


def test_serve_help_explains_every_limit_and_its_variable(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["serve", "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for opt in config.OPTIONS:
        assert opt.flag in text
        assert opt.env_name in text
    for limit in ("--max-batch-size", "--max-waiting", "--max-input-tokens", "--max-new-tokens"):
        assert limit in text
    assert "--grace-seconds" in text
