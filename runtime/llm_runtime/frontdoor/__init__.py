"""The front door: a small stateless gRPC proxy that splits every request between the stable and
the canary revision of an LLMDeployment by weight, whatever the clients' connection pattern.

Why: kube-proxy balances connections, and a gRPC client keeps one long-lived channel, so canary
pods beside the stable ones behind one Service get about no requests. The front door terminates
the callers' connections and chooses a backend per call (unary and streaming), exactly
`weight` percent for the canary over any 100 consecutive calls, retrying on the stable what a
canary refuses before answering.

Modules, the first four free of gRPC so an HTTP (OpenAI-compatible) front door can reuse them
with its own transport:
- `routing`: the config file's format (documented there), parsing, validation (pure).
- `split`: the deterministic weighted chooser (pure).
- `watch`: re-reads the config file on change, keeping the last good config.
- `metrics`: the `llm_frontdoor_*` Prometheus families.
- `proxy`: the gRPC generic handler (raw bytes, metadata, deadline, cancel, retry rules).
- `server`, `main`: the process (`llm-frontdoor`, or `python -m llm_runtime.frontdoor`).

It imports only grpc, protobuf, prometheus_client, the stdlib and `llm_runtime.api` (never torch),
so it runs from the operator's small image.
"""
