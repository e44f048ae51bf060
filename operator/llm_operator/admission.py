"""What `kubectl apply` refuses before the operator ever sees a spec, written twice from one table.

Every mistake that can be found without the cluster (a name a Service cannot carry, an env var
the operator sets itself, a flag it manages, a GPU split in half...) is refused by the apiserver
through the CRD (patterns and CEL `x-kubernetes-validations`, naming the field) and by
`spec.parse` through the same checks in Python. This module holds both halves side by side: the
regexes (RE2 and Python `re` read them alike), the reserved names, derived from the runtime's
option table and the operator's own children, and small pure `*_problem` functions returning
what is wrong, or None. `spec` wires them into its models; `crd` adds the rules on
`metadata.name`.
"""

from __future__ import annotations

import re

import re2
from llm_runtime.api import contract, options

# --- Names -------------------------------------------------------------------------------------

# A Service's name: lower-case, starts with a letter, no dots (RFC 1035 label).
DNS1035_LABEL = "^[a-z]([-a-z0-9]*[a-z0-9])?$"
# A PersistentVolumeClaim's, Secret's or PriorityClass's name (RFC 1123 subdomain, <= 253).
_LABEL_1123 = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_SUBDOMAIN = f"^{_LABEL_1123}(\\.{_LABEL_1123})*$"
_NAME_PART = "[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
# A label key (or a toleration's key): an optional DNS-subdomain prefix and '/', then a name.
QUALIFIED_NAME = f"^({_LABEL_1123}(\\.{_LABEL_1123})*/)?{_NAME_PART}$"
# A label value: empty, or up to 63 of these characters.
LABEL_VALUE = f"^({_NAME_PART})?$"

# Every child's name is the LLMDeployment's name plus one of these (naming.py, routing.py, and
# `-<revision>` for a revision's Deployment and Service, the revision being pod.template_hash's
# 10 hex digits); a Service's name is one DNS label, at most 63 characters.
REVISION_HASH_LENGTH = 10
CHILD_NAME_SUFFIXES = ("-headless", "-frontdoor", "-runtime", "-" + "0" * REVISION_HASH_LENGTH)
DNS_LABEL_MAX = 63
MAX_NAME_LENGTH = DNS_LABEL_MAX - max(len(s) for s in CHILD_NAME_SUFFIXES)


def name_problem(name: str) -> str | None:
    """What is wrong with an LLMDeployment's metadata.name, or None."""
    if not re.match(DNS1035_LABEL, name):
        return (
            f"name {name!r} must be a DNS-1035 label (its Services carry it): lower-case "
            "letters, digits and '-', starting with a letter, no dots"
        )
    if len(name) > MAX_NAME_LENGTH:
        return f"name {name!r} is longer than {MAX_NAME_LENGTH} characters: {_NAME_LENGTH_WHY}"
    return None


_NAME_LENGTH_WHY = (
    f"the operator appends up to {DNS_LABEL_MAX - MAX_NAME_LENGTH} characters to it "
    "(NAME-<revision>, NAME-frontdoor) and those names must fit in 63"
)

# On metadata.name itself (the CRD may restrict it, and its errors then name it).
NAME_RULES: tuple[dict[str, str], ...] = (
    {
        "rule": f"self.matches(r'{DNS1035_LABEL}')",
        "message": "must be a DNS-1035 label (its Services carry it): lower-case letters, digits "
        "and '-', starting with a letter, no dots",
        "reason": "FieldValueInvalid",
    },
    {
        "rule": f"size(self) <= {MAX_NAME_LENGTH}",
        "message": f"must be at most {MAX_NAME_LENGTH} characters: " + _NAME_LENGTH_WHY,
        "reason": "FieldValueInvalid",
    },
)


def subdomain_problem(value: str, *, what: str) -> str | None:
    """None for "" (the field is off) or a DNS-1123 subdomain name, else why not."""
    if value == "" or (len(value) <= 253 and re.match(DNS1123_SUBDOMAIN, value)):
        return None
    return f"{what} {value!r} is not a valid name: lower-case letters, digits, '-' and '.'"


def subdomain_rule(what: str) -> dict[str, str]:
    """The CEL half of subdomain_problem (the field's maxLength bounds it to 253)."""
    return {
        "rule": f"self == '' || self.matches(r'{DNS1123_SUBDOMAIN}')",
        "message": f"must be empty or a valid {what} name: lower-case letters, digits, '-' and "
        "'.', starting and ending with a letter or digit",
        "reason": "FieldValueInvalid",
    }


# --- Environment and flags ---------------------------------------------------------------------

# The settings of `llm-runtime serve` the operator sets itself (pod.runtime_env, from the spec's
# fields), plus `host`, which the pod's ports rely on, and `health_port`, which the probes use.
OPERATOR_SETTINGS = (
    "model",
    "model_name",
    "model_revision",
    "dtype",
    "host",
    "grpc_port",
    "metrics_port",
    "health_port",
    "http_port",
    "max_batch_size",
    "max_waiting",
    "max_input_tokens",
    "max_new_tokens",
    "grace_seconds",
    "max_connection_age_seconds",
    "max_connection_age_grace_seconds",
    "tls_cert",
    "tls_key",
    "auth_token_file",
)
# Variables the operator sets in both containers besides the settings (pod._base_env).
OPERATOR_ENV = ("HOME", "HF_HOME")
RESERVED_ENV = tuple(sorted({*OPERATOR_ENV, *(contract.env(f) for f in OPERATOR_SETTINGS)}))
USER_SETTINGS = tuple(o.field for o in options.OPTIONS if o.field not in OPERATOR_SETTINGS)
USER_SETTING_ENV = tuple(contract.env(f) for f in USER_SETTINGS)
MANAGED_FLAGS = tuple(options.BY_FIELD[f].flag for f in OPERATOR_SETTINGS)
USER_FLAGS = tuple(options.BY_FIELD[f].flag for f in USER_SETTINGS)
# What a container's env var may be called (the classic C-identifier rule, dots and dashes too).
ENV_NAME = "^[-._a-zA-Z][-._a-zA-Z0-9]*$"


def env_name_problem(name: str) -> str | None:
    """Why a user's env var may not be set on the runtime container, or None."""
    if name in RESERVED_ENV:
        return f"env {name} is set by the operator from the spec; use the spec's field instead"
    if name.startswith(options.ENV_PREFIX) and name not in USER_SETTING_ENV:
        return f"env {name} is not a setting of llm-runtime serve (known: {_known_env()})"
    return None


def _known_env() -> str:
    return ", ".join(USER_SETTING_ENV)


def _cel_list(items: tuple[str, ...]) -> str:
    return "[" + ", ".join(f"'{i}'" for i in items) + "]"


ENV_RULES: tuple[dict[str, str], ...] = (
    {
        "rule": f"!(self.name in {_cel_list(RESERVED_ENV)})",
        "messageExpression": "'env ' + self.name + ' is set by the operator from the spec; use "
        "the spec field instead'",
        "fieldPath": ".name",
        "reason": "FieldValueForbidden",
    },
    {
        "rule": f"!self.name.startsWith('{options.ENV_PREFIX}') || "
        f"self.name in {_cel_list(USER_SETTING_ENV)}",
        "messageExpression": f"'env ' + self.name + ' is not a setting of llm-runtime serve "
        f"(known: {_known_env()})'",
        "fieldPath": ".name",
        "reason": "FieldValueInvalid",
    },
    {
        "rule": "!has(self.value) || !has(self.valueFrom)",
        "message": "set either value or valueFrom, not both",
        "fieldPath": ".valueFrom",
        "reason": "FieldValueForbidden",
    },
)

_MANAGED_ARG = "^(" + "|".join(MANAGED_FLAGS) + ")(=.*)?$"
_KNOWN_ARG = "^(" + "|".join(MANAGED_FLAGS + USER_FLAGS) + ")(=.*)?$"


def arg_problem(arg: str) -> str | None:
    """Why one of spec.runtime.args may not be passed to `llm-runtime serve`, or None. A value
    (not starting with '-') is fine; a flag must be one of the user's settings, spelled out."""
    if re.match(_MANAGED_ARG, arg):
        return f"{arg!r} sets a flag the operator manages from the spec ({_flag_owner(arg)})"
    if arg.startswith("-") and not re.match(_KNOWN_ARG, arg):
        return f"{arg!r} is not a flag of llm-runtime serve (allowed: {', '.join(USER_FLAGS)})"
    return None


# Where each managed flag's value comes from, for the refusal's message.
_FLAG_FIELDS = {
    "--grpc-port": "spec.service.port",
    "--metrics-port": f"fixed at {contract.RUNTIME_METRICS_PORT}",
    "--health-port": f"fixed at {contract.RUNTIME_HEALTH_PORT}",
    "--tls-cert": "spec.security.tlsSecretName",
    "--tls-key": "spec.security.tlsSecretName",
    "--auth-token-file": "spec.security.authTokenSecretName",
    "--model": "spec.model.source",
    "--model-name": "spec.model.name",
    "--dtype": "spec.model.dtype",
    "--grace-seconds": "spec.drainGracePeriodSeconds",
}


def _flag_owner(arg: str) -> str:
    flag = arg.partition("=")[0]
    if flag in _FLAG_FIELDS:
        return _FLAG_FIELDS[flag]
    if flag.startswith("--max-connection-age"):
        return "spec.service"
    if flag.startswith("--max-"):
        return "spec.runtime.limits"
    return "set by the operator"


ARG_RULES: tuple[dict[str, str], ...] = (
    {
        "rule": f"!self.matches(r'{_MANAGED_ARG}')",
        "messageExpression": "'\\'' + self + '\\' sets a flag the operator manages from the spec "
        "(ports, model, limits, TLS, auth): use the spec field instead'",
        "reason": "FieldValueForbidden",
    },
    {
        "rule": f"!self.startsWith('-') || self.matches(r'{_KNOWN_ARG}')",
        "messageExpression": "'\\'' + self + '\\' is not a flag of llm-runtime serve (allowed: "
        + ", ".join(USER_FLAGS)
        + ")'",
        "reason": "FieldValueInvalid",
    },
)

# The ports the runtime container already listens on besides the gRPC one.
RESERVED_PORTS = (
    contract.RUNTIME_METRICS_PORT,
    contract.RUNTIME_HEALTH_PORT,
    contract.RUNTIME_HTTP_PORT,
)
_TAKEN = (
    f"{RESERVED_PORTS[0]} (metrics), {RESERVED_PORTS[1]} (health) and {RESERVED_PORTS[2]} "
    "(OpenAI-compatible HTTP)"
)


def port_problem(port: int) -> str | None:
    if port in RESERVED_PORTS:
        return f"port {port} is taken by the runtime, which listens on {_TAKEN}"
    return None


PORT_RULE: dict[str, str] = {
    "rule": f"!(self in {list(RESERVED_PORTS)})",
    "message": f"the runtime already listens on {_TAKEN}: choose another port",
    "reason": "FieldValueForbidden",
}


# --- Model sources -----------------------------------------------------------------------------

# Every scheme the runtime's fetch reads; a pvc:// claim is a DNS subdomain.
SOURCE = (
    f"^(file:///.+|/.+|pvc://{_LABEL_1123}(\\.{_LABEL_1123})*/.+"
    "|hf://[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+@[A-Za-z0-9_./-]+|builtin://[a-z0-9.-]+)$"
)
# hf:// pins a commit: a branch or tag can move under a running deployment (and a revision with
# '/' is not supported by fetch). A file after the commit is one GGUF in the repository.
HF_SOURCE = "^hf://[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+@[0-9a-f]{40}(/[A-Za-z0-9_./-]+\\.gguf)?$"
_DOT_DOT = "(^|/)\\.\\.(/|$)"
HF_MESSAGE = (
    "an hf:// source must pin a commit: hf://org/name@<40 hex digits>[/file.gguf]; a branch or "
    "tag (main, v1.0) can move under a running deployment"
)


def source_problem(source: str) -> str | None:
    """What is wrong with spec.model.source, or None."""
    if not re.match(SOURCE, source):
        return (
            f"unsupported model source {source!r}: use file:///path, /path, pvc://claim/path, "
            "hf://org/name@revision or builtin://name"
        )
    if source.startswith("hf://") and not re.match(HF_SOURCE, source):
        return HF_MESSAGE
    if re.search(_DOT_DOT, source):
        return "a model source's path must not contain '..'"
    return None


SOURCE_RULES: tuple[dict[str, str], ...] = (
    {
        "rule": f"self.matches(r'{SOURCE}')",
        "messageExpression": '"unsupported model source \'" + self + "\': use '
        'file:///path, /path, pvc://claim/path, hf://org/name@revision or builtin://name"',
        "reason": "FieldValueInvalid",
    },
    {
        "rule": f"!self.startsWith('hf://') || self.matches(r'{HF_SOURCE}')",
        "message": HF_MESSAGE,
        "reason": "FieldValueInvalid",
    },
    {
        "rule": f"!self.matches(r'{_DOT_DOT}')",
        "message": "a model source's path must not contain '..'",
        "reason": "FieldValueInvalid",
    },
)

# --- Smoke prompt regexes and durations --------------------------------------------------------


def regex_problem(pattern: str) -> str | None:
    """None for a pattern RE2 compiles (what CEL's matches() and the operator's matcher run),
    else why not: RE2 has no backreferences or lookarounds, so matching stays linear."""
    try:
        re2.compile(pattern)
    except re2.error as e:
        return f"expect {pattern!r} is not an RE2 regular expression: {e}"
    return None


# matches() compiles its argument: an invalid pattern is an evaluation error, which the
# apiserver reports against this field (a rule that swallowed it, `x || true`, would pass).
REGEX_RULE: dict[str, str] = {
    "rule": "type(''.matches(self)) == bool",
    "message": "expect must be an RE2 regular expression (no backreferences or lookarounds)",
    "reason": "FieldValueInvalid",
}


def positive_duration_problem(seconds: float) -> str | None:
    return None if seconds > 0 else "must be longer than zero"


# The CRD's durations are whole numbers with units, so a duration is zero when no digit is.
POSITIVE_DURATION_RULE: dict[str, str] = {
    "rule": "self.matches('[1-9]')",
    "message": "must be longer than zero, e.g. 10s",
    "reason": "FieldValueInvalid",
}
