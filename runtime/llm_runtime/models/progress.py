"""One switch for every progress bar a model operation can show.

Ours (hashing) plus the ones transformers (GGUF dequantisation, weight loading) and
huggingface_hub (downloads) draw themselves. `None` means "on a terminal only", so pod logs are
not filled with carriage-return redraws unless `--progress` asks for them.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from collections.abc import Iterator
from typing import Any


def resolve(progress: bool | None) -> bool:
    """An explicit choice wins; otherwise bars only when stderr is a terminal."""
    return sys.stderr.isatty() if progress is None else progress


@contextlib.contextmanager
def hub_bars(progress: bool | None) -> Iterator[None]:
    """huggingface_hub's download bars follow `progress` within the block."""
    # the module, not the `tqdm` class that huggingface_hub.utils re-exports under that name
    utils = importlib.import_module("huggingface_hub.utils.tqdm")

    was_disabled = utils.are_progress_bars_disabled()
    (utils.enable_progress_bars if resolve(progress) else utils.disable_progress_bars)()
    try:
        yield
    finally:
        (utils.disable_progress_bars if was_disabled else utils.enable_progress_bars)()


@contextlib.contextmanager
def transformers_bars(progress: bool | None) -> Iterator[None]:
    """transformers' loading/dequantising bars follow `progress` within the block."""
    from transformers.utils import logging as typed_logging

    hf_logging: Any = typed_logging  # its enable/disable functions are unannotated

    was_enabled = hf_logging.is_progress_bar_enabled()
    show = resolve(progress)
    (hf_logging.enable_progress_bar if show else hf_logging.disable_progress_bar)()
    try:
        yield
    finally:
        (hf_logging.enable_progress_bar if was_enabled else hf_logging.disable_progress_bar)()
