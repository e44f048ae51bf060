"""spec.parse refuses what the CRD refuses: the admission corpus through the parser, the
reserved names derived from the code that sets them, and the longest name's children."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from llm_operator import admission, builders, pod, routing, spec
from llm_runtime.api import contract, options

pytestmark = pytest.mark.unit

CORPUS = Path(__file__).resolve().parents[2] / "integration" / "admission_corpus"
REFUSED = sorted((CORPUS / "refused").glob("*.yaml"))
VALID = sorted((CORPUS / "valid").glob("*.yaml"))
SHA = "0123456789abcdef0123456789abcdef01234567"


def _load(path: Path) -> dict[str, Any]:
    return dict(yaml.safe_load(path.read_text()))


def _crd_only(manifest: Path) -> bool:
    """A `# Parser: accepts` line marks a mistake only the CRD refuses (and says why)."""
    return "\n# Parser: accepts" in manifest.read_text()


@pytest.mark.parametrize("manifest", REFUSED, ids=[m.stem for m in REFUSED])
def test_every_mistake_the_apiserver_refuses_the_parser_refuses(manifest: Path) -> None:
    if _crd_only(manifest):
        spec.parse(_load(manifest))
        return
    with pytest.raises(spec.InvalidResourceError):
        spec.parse(_load(manifest))


def test_nearly_every_mistake_is_refused_by_both() -> None:
    assert sum(_crd_only(m) for m in REFUSED) <= 1


@pytest.mark.parametrize("manifest", VALID, ids=[m.stem for m in VALID])
def test_every_legitimate_edge_case_parses(manifest: Path) -> None:
    spec.parse(_load(manifest))


def _deployment(name: str, **fields: Any) -> spec.LLMDeployment:
    body = {"model": {"name": "m", "source": "/x"}, **fields}
    return spec.parse({"metadata": {"name": name, "uid": "u"}, "spec": body})


def test_the_longest_name_makes_children_names_of_at_most_63() -> None:
    d = _deployment("a" * admission.MAX_NAME_LENGTH, rollout={"trafficRouting": "FrontDoor"})
    want = builders.desired(d, default_image="img:1")
    names = [c["metadata"]["name"] for c in want.children]
    names += [routing.deployment(d, image="img:1")["metadata"]["name"]]
    names += [routing.revision_service(d, want.revision)["metadata"]["name"]]
    assert max(len(n) for n in names) == admission.DNS_LABEL_MAX  # the bound is tight
    assert len(want.revision) == admission.REVISION_HASH_LENGTH


def test_one_character_more_is_refused() -> None:
    with pytest.raises(spec.InvalidResourceError, match="longer than 52"):
        _deployment("a" * (admission.MAX_NAME_LENGTH + 1))


def test_every_variable_the_operator_sets_is_reserved() -> None:
    d = _deployment("chat", security={"tlsSecretName": "tls", "authTokenSecretName": "token"})
    template, _ = pod.pod_template(d, image="img:1")
    containers = template["spec"]["containers"] + template["spec"]["initContainers"]
    set_by_operator = {e["name"] for c in containers for e in c["env"]}
    assert set_by_operator <= set(admission.RESERVED_ENV)


def test_reserved_settings_are_flags_and_user_settings_are_the_rest() -> None:
    assert set(admission.USER_SETTINGS) | set(admission.OPERATOR_SETTINGS) == set(options.BY_FIELD)
    assert "--grpc-port" in admission.MANAGED_FLAGS and "--log-level" in admission.USER_FLAGS


@pytest.mark.parametrize(
    ("arg", "refused"),
    [
        ("--grpc-port", True),
        ("--grpc-port=1", True),
        ("--model-name=x", True),
        ("--grpc", True),
        ("-h", True),
        ("--log-level", False),
        ("--log-level=DEBUG", False),
        ("DEBUG", False),
        ("/models/x", False),
    ],
)
def test_args(arg: str, refused: bool) -> None:
    assert (admission.arg_problem(arg) is not None) is refused


def test_an_arg_refusal_names_the_spec_field_to_use() -> None:
    assert "spec.service.port" in (admission.arg_problem("--grpc-port=1") or "")
    assert "spec.runtime.limits" in (admission.arg_problem("--max-new-tokens") or "")


@pytest.mark.parametrize(
    ("name", "refused"),
    [
        (contract.env("grpc_port"), True),
        ("HOME", True),
        ("LLM_RUNTIME_NOPE", True),
        (contract.env("log_level"), False),
        ("HF_TOKEN", False),
    ],
)
def test_env_names(name: str, refused: bool) -> None:
    assert (admission.env_name_problem(name) is not None) is refused


@pytest.mark.parametrize(
    ("source", "ok"),
    [
        (f"hf://org/name@{SHA}", True),
        (f"hf://org/name@{SHA}/q/m.Q4.gguf", True),
        ("hf://org/name@main", False),
        (f"hf://org/name@{SHA.upper()}", False),
        ("hf://org/name@refs/pr/1", False),
        ("pvc://claim/a/../b", False),
        ("pvc://claim.v2/models", True),
        ("builtin://smollm2-135m-instruct", True),
    ],
)
def test_sources(source: str, ok: bool) -> None:
    assert (admission.source_problem(source) is None) is ok


@pytest.mark.parametrize(
    ("pattern", "ok"), [("(?i)paris", True), (r"(a)\1", False), ("a(?=b)", False)]
)
def test_expect_is_re2(pattern: str, ok: bool) -> None:
    assert (admission.regex_problem(pattern) is None) is ok


def test_the_defaults_pass_every_check() -> None:
    d = spec.parse({"metadata": {"name": "chat"}, "spec": {"model": {"name": "m", "source": "/x"}}})
    assert d.spec.runtime.image == "" and d.spec.service.port == contract.RUNTIME_GRPC_PORT


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"metadata": []},
        {"metadata": {"name": 3}},
        {"metadata": {"name": "a", "generation": "x"}},
    ],
)
def test_a_body_without_a_usable_identity_is_an_invalid_resource(body: dict[str, Any]) -> None:
    with pytest.raises(spec.InvalidResourceError):
        spec.parse(body)
