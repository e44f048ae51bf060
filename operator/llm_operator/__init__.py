"""llm-operator: a kopf operator that serves language models with `llm-runtime`.

Layout: `spec` parses the custom resource, `builders` turns it into child objects (pure),
`status` turns observed children into phase and conditions (pure), `kube` is the only door to the
API server, `handlers` wires them into kopf, `main` starts everything.
"""

GROUP = "llm-operator.io"
VERSION = "v1alpha1"
PLURAL = "llmdeployments"
KIND = "LLMDeployment"
FIELD_MANAGER = "llm-operator"
