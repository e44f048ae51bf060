"""Generated gRPC stubs for llm.runtime.v1 (see hack/gen_proto.py)."""
