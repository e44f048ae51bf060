"""Errors of the model layer, each naming what the operator or a user must fix.

They are separate from `llm_runtime.types` errors: those map to gRPC status codes per request,
these stop a pod from starting (fetch, convert, load) and must read well in a pod log.
"""

from __future__ import annotations


class ModelError(Exception):
    """Base of every error raised while fetching, converting or loading a model."""


class ModelFormatError(ModelError):
    """The path holds no model we know how to load (or an ambiguous one, e.g. two GGUF files)."""


class ModelIntegrityError(ModelError):
    """A converted model does not match its manifest: a file is corrupted, missing or unlisted."""


class FetchError(ModelError):
    """The source could not be obtained: not found, offline, access denied."""


class UnsupportedURIError(FetchError):
    """The URI's scheme is not one `llm-runtime fetch` understands."""
