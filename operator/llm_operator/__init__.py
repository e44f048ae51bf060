"""llm-operator: a kopf operator that serves language models with `llm-runtime`.

Layout: `spec` parses the custom resource, `builders` turns it into child objects (pure),
`status` turns observed children into phase and conditions (pure), `kube` is the only door to the
API server, `handlers` wires them into kopf, `main` starts everything.
"""

from llm_runtime.api import contract

# The API group is shared with the runtime's contract (label keys live under it).
GROUP = contract.GROUP
VERSION = "v1alpha1"
PLURAL = "llmdeployments"
KIND = "LLMDeployment"
FIELD_MANAGER = "llm-operator"
