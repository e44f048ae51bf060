"""The facts the operator and the runtime share, written once: label keys, ports, metric names,
and the names of the environment variables the runtime reads (`env`, from its option table).

Torch-free and import-light, so the operator, the chart tests, the benchmarks and the e2e tests
import it instead of retyping strings. Changing a value here changes both sides at once; a value
typed anywhere else is a second source of truth waiting to drift.
"""

from __future__ import annotations

from llm_runtime.api import options

# The API group of the LLMDeployment custom resource; label and annotation keys live under it.
GROUP = "llm-operator.io"

# Labels the operator stamps on every child, and the one that tells revisions apart.
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_DEPLOYMENT = f"{GROUP}/deployment"
LABEL_REVISION = f"{GROUP}/revision"
LABEL_COMPONENT = "app.kubernetes.io/component"

# Ports. The runtime's defaults (`llm-runtime serve`), which the operator also sets in pods.
RUNTIME_GRPC_PORT = 50051
RUNTIME_METRICS_PORT = 9090
RUNTIME_HEALTH_PORT = 8081
# The OpenAI-compatible HTTP API (`--http-port`), beside gRPC on the same engine.
RUNTIME_HTTP_PORT = 8000
# The operator's own endpoints: kopf's liveness (/healthz) and Prometheus /metrics.
OPERATOR_HEALTH_PORT = 8080
OPERATOR_METRICS_PORT = 9090

# Metric families the runtime exports and the canary analysis reads (docs/metrics.md), named as
# a scrape shows them: a counter's family carries its `_total` suffix here.
METRIC_REQUESTS = "llm_runtime_requests_total"
METRIC_TTFT_SECONDS = "llm_runtime_time_to_first_token_seconds"
METRIC_TPOT_SECONDS = "llm_runtime_time_per_output_token_seconds"
# The front door's config in force: 1 per backend, labelled `backend` and `revision`. The
# operator retires a revision only once no Ready front door reports it (routing.routed_revisions).
METRIC_FRONTDOOR_BACKEND_INFO = "llm_frontdoor_backend_info"
# The label on the request metrics that tells the two ways in apart, and its values. The canary
# analysis sums over it: HTTP traffic is judged like gRPC traffic.
LABEL_PROTOCOL = "protocol"
PROTOCOL_GRPC = "grpc"
PROTOCOL_HTTP = "http"


def env(field: str) -> str:
    """The environment variable the runtime reads for the `llm-runtime serve` setting `field`
    (`env("grpc_port")` is "LLM_RUNTIME_GRPC_PORT"); KeyError for a field the runtime lacks, so a
    typo fails where the name is built, at import or in a test, not in a pod."""
    try:
        return options.BY_FIELD[field].env_name
    except KeyError:
        raise KeyError(f"llm-runtime serve has no setting {field!r}") from None


# The front door's pods (trafficRouting: FrontDoor) carry this label instead of LABEL_DEPLOYMENT,
# so they are never counted among the runtime's pods.
LABEL_FRONTDOOR = f"{GROUP}/frontdoor"
# Where the front door reads its routes (a ConfigMap key mounted as a file).
FRONTDOOR_ROUTES_KEY = "routes.json"
FRONTDOOR_CONFIG_DIR = "/etc/llm-frontdoor"

# Trailing metadata on every Runtime call the runtime answers: the revision that served it, so a
# client (and a test) can tell which side of a canary split answered, whatever routed the call.
METADATA_REVISION = "llm-revision"
# The HTTP header that carries a request's id (as the request_id field does on gRPC): the runtime
# keeps a valid one and answers with it, else makes one up.
HEADER_REQUEST_ID = "x-request-id"
