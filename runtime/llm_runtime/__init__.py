"""llm_runtime: the shared gRPC inference runtime that every LLMDeployment pod runs.

Importing this package must stay cheap and torch-free: `llm_runtime.api` (generated stubs and the
small client) is imported by the operator, whose image has no torch.
"""

__version__ = "0.1.0"
