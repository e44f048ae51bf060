"""Model files: choosing device/dtype, loading, the converted deployment format, fetching.

Importing this package stays torch-free (the CLI's `--help` and the fetch URI parser must be fast);
torch and transformers are imported by `loading`, `convert` and `tiny` only.
"""

from __future__ import annotations

from llm_runtime.models.builtin import DEFAULT_MODEL_URI, default_model_path

__all__ = ["DEFAULT_MODEL_URI", "default_model_path"]
