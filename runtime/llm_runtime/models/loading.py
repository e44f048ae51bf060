"""Load a model for serving: converted dir (verified), plain HF dir, or GGUF.

The converted format is what pods should serve from: it loads in well under a second, against
~20 s for the packaged GGUF (dequantised on every load). GGUF and plain HF stay supported so a
developer can point the runtime at whatever they have.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

from llm_runtime.models import device as device_mod
from llm_runtime.models import errors, formats, manifest
from llm_runtime.models import progress as progress_

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class LoadedModel:
    """A model ready for the engine: in eval mode, on `device`, in `dtype`."""

    model: Any  # transformers PreTrainedModel (a *ForCausalLM)
    tokenizer: Any  # transformers tokenizer with a chat template where the model has one
    name: str
    revision: str
    dtype: str  # torch's name: bfloat16 | float16 | float32
    device: str  # cpu | cuda | cuda:N
    context_length: int
    load_seconds: float
    format: str = ""  # converted | hf | gguf
    path: Path | None = None


def torch_dtype(name: str) -> Any:
    """torch.dtype for a canonical name."""
    import torch

    return getattr(torch, device_mod.normalize_dtype(name))


def context_length(config: Any, tokenizer: Any) -> int:
    """The model's context window: config.max_position_embeddings, else the tokenizer's limit."""
    for attr in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 0 < limit < 10**9:
        return limit
    raise errors.ModelFormatError("the model's config names no context length")


def clear_quantization(model: Any) -> Any:
    """Make a GGUF-loaded (already dequantised) model a plain one: transformers refuses to
    save_pretrained a model that still carries its GGUF quantization config."""
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return model


def read_weights(found: formats.Located, *, dtype: str, device: str) -> tuple[Any, Any]:
    """(model, tokenizer) from located files, in eval mode on `device`. What transformers and
    safetensors raise for unreadable files becomes a ModelFormatError naming the path."""
    from safetensors import SafetensorError

    try:
        if found.format is formats.ModelFormat.GGUF:
            return _read_gguf(found, dtype=dtype, device=device)
        return _read_hf(found, dtype=dtype, device=device)
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as exc:
        where = found.folder / found.gguf_file if found.gguf_file else found.folder
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise errors.ModelFormatError(f"cannot load the model at {where}: {first}") from exc


def _read_hf(found: formats.Located, *, dtype: str, device: str) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(found.folder)
    model: Any = AutoModelForCausalLM.from_pretrained(found.folder, dtype=torch_dtype(dtype))
    return model.to(device).eval(), tokenizer


def _read_gguf(found: formats.Located, *, dtype: str, device: str) -> tuple[Any, Any]:
    """GGUF via transformers (needs `gguf_file=`), dequantised into a dense model in `dtype`.

    Dense because the engine and `save_pretrained` need plain Linear layers. Loading straight in
    `dtype` (not float32 then `.to(dtype)`) matters: a cast afterwards also casts the rotary
    `inv_freq` buffer to bf16, and the logits drift from the converted model's.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    tokenizer = AutoTokenizer.from_pretrained(found.folder, gguf_file=found.gguf_file)
    model = AutoModelForCausalLM.from_pretrained(
        found.folder,
        gguf_file=found.gguf_file,
        quantization_config=GgufConfig(dequantize=True),
        dtype=torch_dtype(dtype),
    )
    model = clear_quantization(model)
    return model.to(device).eval(), tokenizer


def default_name(found: formats.Located, config: Any) -> str:
    """A display name when the caller gives none: the GGUF file stem or the folder name."""
    if found.gguf_file:
        return Path(found.gguf_file).stem
    return found.folder.resolve().name or str(getattr(config, "model_type", "model"))


def load_model(
    path: str | Path,
    *,
    dtype: str = "auto",
    device: str = "auto",
    name: str | None = None,
    revision: str | None = None,
    format: str = "auto",
    progress: bool | None = None,
) -> LoadedModel:
    """Load the model at `path` for serving.

    A converted directory is verified against its manifest first (every file's sha256); a mismatch
    raises ModelIntegrityError naming the file. `revision` defaults to the manifest digest for
    converted models and to "local" otherwise; `name` to the manifest's name, GGUF stem or folder.
    """
    started = time.monotonic()
    found = formats.locate(Path(path), expected=format)
    meta = None
    if found.format is formats.ModelFormat.CONVERTED:
        meta = manifest.read_verified(found.folder, progress=progress)
    chosen_device, chosen_dtype = device_mod.resolve(device=device, dtype=dtype)
    with progress_.transformers_bars(progress):
        model, tokenizer = read_weights(found, dtype=chosen_dtype, device=chosen_device)
    loaded = LoadedModel(
        model=model,
        tokenizer=tokenizer,
        name=name or (meta.name if meta else default_name(found, model.config)),
        revision=revision or (meta.digest if meta else "local"),
        dtype=chosen_dtype,
        device=chosen_device,
        context_length=context_length(model.config, tokenizer),
        load_seconds=time.monotonic() - started,
        format=found.format.value,
        path=found.folder,
    )
    log.info(
        "loaded model %s (%s, %s) on %s in %.2f s",
        loaded.name,
        loaded.format,
        loaded.dtype,
        loaded.device,
        loaded.load_seconds,
    )
    return loaded
