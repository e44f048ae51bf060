"""The runtime's gRPC API as other programs use it: generated stubs (`v1`) and a small typed client.

The operator imports this package, and its image has no torch: nothing here may import torch,
transformers or the rest of `llm_runtime` (an import-linter contract checks it).
"""
